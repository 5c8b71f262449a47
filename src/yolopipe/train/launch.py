"""Starting torch.distributed.run so that signals reach the ranks, and how rank 0 tells the launcher how the run
ended (no Ultralytics import: yolopipe.train.ddp uses it)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path

OUTCOME = "yolopipe-outcome.json"  # rank 0 leaves how the run ended in the Ultralytics run folder


def run_forwarding_signals(cmd: list[str]) -> tuple[int, int | None]:
    """Run torch.distributed.run in its own session, so a Ctrl-C or a group's SIGTERM reaches the ranks once,
    through this process; forward SIGTERM and SIGINT to the ranks. Returns (exit code, first signal)."""
    agent = subprocess.Popen(cmd, start_new_session=True)  # the ranks: each in a session of its own, too
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        return agent.wait(), None

    def forward(signum: int, frame) -> None:
        received.append(signum)
        _signal_ranks(agent.pid, signum)
        handler = previous[signum]
        if callable(handler):  # yolopipe's StopOnSignal records it (a second one raises KeyboardInterrupt)
            handler(signum, frame)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        returncode = agent.wait()
    except BaseException:  # a second signal: stop now (last.pt holds the last epoch)
        _signal_ranks(agent.pid, signal.SIGKILL)
        agent.kill()
        agent.wait()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return returncode, (received[0] if received else None)


def _signal_ranks(agent_pid: int, signum: int) -> None:
    """Send `signum` to the ranks themselves (the agent, told, would also SIGKILL them 30 s later)."""
    import psutil

    try:
        ranks = psutil.Process(agent_pid).children()
    except psutil.NoSuchProcess:
        return
    for rank in ranks:
        try:
            rank.send_signal(signum)
        except psutil.NoSuchProcess:
            pass


def write_outcome(save_dir: Path, outcome: dict) -> None:
    partial = save_dir / f".{OUTCOME}.partial"
    partial.write_text(json.dumps(outcome))
    partial.replace(save_dir / OUTCOME)


def read_outcome(save_dir: Path) -> dict:
    try:
        return json.loads((save_dir / OUTCOME).read_text())
    except (FileNotFoundError, ValueError):
        return {}
