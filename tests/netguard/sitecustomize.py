"""Network guard for the offline tests.

Put this directory on PYTHONPATH and set YOLOPIPE_NETGUARD_LOG: every Python process started under it
(dvc, the stage commands it spawns, Ultralytics) refuses connections and name lookups to anything but
loopback, and appends each attempt to the log so a test can require that none was made.
"""

import os
import socket

_LOG = os.environ.get("YOLOPIPE_NETGUARD_LOG")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_loopback(host) -> bool:
    if host is None:
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    return host in _LOOPBACK_NAMES or host.startswith("127.") or host in {"::1", "0:0:0:0:0:0:0:1", ""}


def _refuse(what: str) -> None:
    with open(_LOG, "a") as log:
        log.write(f"{os.getpid()} {what}\n")


if _LOG:
    _connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            _refuse(f"connect {address}")
            raise OSError(101, f"network unreachable (netguard refused {address})")
        return _connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            _refuse(f"connect {address}")
            return 101
        return _connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host):
            _refuse(f"getaddrinfo {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"netguard refused a lookup of {host}")
        return _getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
