"""The offline test is only as good as its guard: prove the guard refuses and records, and spares loopback."""

import sys

from conftest import run

PROBE = """
import socket
server = socket.create_server(("127.0.0.1", 0))
socket.create_connection(server.getsockname(), timeout=2).close()  # loopback still works
for attempt in (lambda: socket.getaddrinfo("example.com", 443),
                lambda: socket.create_connection(("203.0.113.7", 443), timeout=2)):  # TEST-NET-3
    try:
        attempt()
    except OSError as error:
        print("refused:", error)
"""


def test_guard_refuses_and_records_everything_but_loopback(netguard_env, tmp_path):
    env, log = netguard_env
    result = run([sys.executable, "-c", PROBE], tmp_path, env)
    assert result.stdout.count("refused:") == 2
    assert "getaddrinfo example.com" in log.read_text()
    assert "203.0.113.7" in log.read_text()
    assert "127.0.0.1" not in log.read_text()
