"""Every GPU of a box: torch DDP as Ultralytics launches it, with our per-epoch work on rank 0 only.

Ultralytics trains on several GPUs by pickling the trainer class, its arguments, the model and the callbacks,
and running them under `torch.distributed.run` in one process per GPU; the process that called train() only
waits. So our callbacks travel as plain data (yolopipe.train.epochs.EpochWork) and act only on RANK 0, and
this trainer class (imported only after yolopipe.ultra.load_ultralytics), adds what Ultralytics lacks:
- a SIGTERM or SIGINT to the training process reaches every rank (not only the launcher), once;
- every rank stops at the same batch: the stop check agrees across ranks (one tiny all-reduce per batch),
  because a rank that stops alone leaves the others waiting in a collective.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path

from ultralytics.models.yolo.detect import DetectionTrainer

from yolopipe.errors import PipelineError
from yolopipe.train.ranks import LOCAL_RANK
from yolopipe.train.resume import TrainingInterrupted

OUTCOME = "yolopipe-outcome.json"  # rank 0 leaves how the run ended in the Ultralytics run folder


class Trainer(DetectionTrainer):
    """Ultralytics' detection trainer; on several devices, launched so that signals reach every rank."""

    def __init__(self, *args, **kwargs) -> None:
        if LOCAL_RANK != -1:  # a DDP rank: a fresh interpreter, without the patches load_ultralytics made
            from yolopipe.ultra import patch_ddp_rank

            patch_ddp_rank()
        super().__init__(*args, **kwargs)

    @classmethod
    def launches_ranks(cls, device: str | None) -> bool:
        """Whether Ultralytics will start one process per device for `device` (then this one only waits)."""
        return device is not None and "," in device

    def train(self):
        if not self.ddp:
            return super().train()
        from ultralytics.utils import LOGGER
        from ultralytics.utils.dist import ddp_cleanup, generate_ddp_command
        from ultralytics.utils.torch_utils import unset_deterministic

        if self.args.rect:
            LOGGER.warning("'rect=True' is incompatible with Multi-GPU training, setting 'rect=False'")
            self.args.rect = False
        (Path(self.save_dir) / OUTCOME).unlink(missing_ok=True)
        cmd, file = generate_ddp_command(self)
        try:
            forwarded = _run_forwarding_signals(cmd)
        finally:
            ddp_cleanup(self, str(file))
            unset_deterministic()
        self.outcome = read_outcome(Path(self.save_dir))
        returncode, signum = forwarded
        if self.outcome.get("status") == "KILLED" or (signum and returncode):
            raise TrainingInterrupted(self.outcome.get("signum") or signum or signal.SIGTERM,
                                      self.outcome.get("completed", self._epochs_saved()), self.epochs)
        if returncode or self.outcome.get("status") != "FINISHED":
            raise PipelineError(f"multi-GPU training ({self.world_size} processes) failed with exit code "
                                f"{returncode}; the ranks' errors are above", hint="train.device: 0 trains on one GPU")

    def _epochs_saved(self) -> int:
        """Epochs in rank 0's last checkpoint, for a rank 0 that was killed before it said how it ended."""
        import torch

        try:
            return torch.load(self.last, map_location="cpu", weights_only=False).get("epoch", -1) + 1
        except (OSError, RuntimeError, EOFError):
            return 0


def _run_forwarding_signals(cmd: list[str]) -> tuple[int, int | None]:
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
