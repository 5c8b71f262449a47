"""Resuming an interrupted training: when models/last.pt may be continued, and stopping cleanly on a signal.

Ultralytics resumes from a checkpoint with the checkpoint's own arguments (it ignores a new `epochs`) and,
given a finished checkpoint, starts an unrelated run. So we stamp every checkpoint we keep with a
fingerprint of the training params and the staged data, and resume only an unfinished one whose
fingerprint matches; anything else starts fresh and says why.
"""

from __future__ import annotations

import csv
import hashlib
import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from yolopipe.dvchashes import dataset_md5
from yolopipe.params import TrainParams

# Settings that may differ between the machine that started a run and the one that continues it.
PER_MACHINE = {"device", "workers", "max_hours", "checkpoint_every", "mlflow_uri"}
STAMP_KEY = "yolopipe"  # our key inside the checkpoint dict; Ultralytics ignores unknown keys


def fingerprint(params: TrainParams, data_root: Path, lock: Path = Path("dvc.lock")) -> str:
    """sha256 of the training params (less the per-machine ones) and of the staged data's content."""
    digest = hashlib.sha256()
    digest.update(json.dumps(params.model_dump(exclude=PER_MACHINE, mode="json"), sort_keys=True).encode())
    digest.update(dataset_md5(data_root, lock).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class ResumePlan:
    checkpoint: Path | None  # the checkpoint to continue, None to start fresh
    start_epoch: int = 0  # 0-based index of the first epoch to run
    reason: str = ""  # why not resumed ("" when there was nothing to resume)
    same_run: bool = False  # the checkpoint is this run's (finished, if not resumed)

    @property
    def message(self) -> str:
        if self.checkpoint is not None:
            return f"resuming from {self.checkpoint} at epoch {self.start_epoch + 1}"
        return f"starting a fresh training: {self.reason}" if self.reason else "starting a fresh training"


def plan_resume(last: Path, expected: str) -> ResumePlan:
    """Resume from `last` only if it is an unfinished checkpoint written for the same params and data."""
    if not last.is_file():
        return ResumePlan(None)
    import torch

    try:
        checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    except Exception as exc:  # a torn file from a crash mid-write (we write atomically, but be safe)
        return ResumePlan(None, reason=f"{last} is unreadable ({type(exc).__name__})")
    stamp = checkpoint.get(STAMP_KEY) or {}
    epoch = checkpoint.get("epoch", -1)
    epochs = (checkpoint.get("train_args") or {}).get("epochs", 0)
    if stamp.get("fingerprint") != expected:
        return ResumePlan(None, reason=f"params or data changed since {last} was written")
    if epoch < 0 or checkpoint.get("optimizer") is None or epoch + 1 >= epochs:
        return ResumePlan(None, reason=f"{last} is from a finished training", same_run=True)
    return ResumePlan(last, start_epoch=epoch + 1, same_run=True)


def drop_steps_from(live_dir: Path, step: int) -> None:
    """Remove dvclive rows at or after `step`, so a resumed run rewrites them once (a kill can land between
    the checkpoint save and dvclive's row for that epoch, in either order)."""
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        with tsv.open(newline="") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))
        if not rows or "step" not in rows[0]:
            continue
        column = rows[0].index("step")
        kept = [rows[0], *(row for row in rows[1:] if int(row[column]) < step)]
        with tsv.open("w", newline="") as handle:
            csv.writer(handle, delimiter="\t", lineterminator="\n").writerows(kept)


class TrainingInterrupted(Exception):
    """Raised from an Ultralytics callback after SIGTERM or SIGINT; models/last.pt holds the last epoch."""

    def __init__(self, signum: int, completed: int, epochs: int) -> None:
        self.signum, self.completed, self.epochs = signum, completed, epochs
        self.exit_code = 128 + signum  # what a shell reports for a process killed by that signal
        super().__init__(f"training interrupted by {signal.Signals(signum).name} after {completed}/{epochs} "
                         f"epochs (kept in models/last.pt); run `dvc repro` again to resume")


class StopOnSignal:
    """SIGTERM (a spot instance's notice) or SIGINT sets a flag; training stops at the next batch or epoch
    boundary by raising TrainingInterrupted. A second signal stops at once."""

    def __init__(self, completed: int = 0) -> None:
        self.signum: int | None = None
        self.completed = completed  # epochs saved to models/last.pt, kept up to date by the trainer

    @contextmanager
    def installed(self) -> Iterator[StopOnSignal]:
        if threading.current_thread() is not threading.main_thread():  # Python allows handlers only there
            yield self
            return
        previous = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def check(self, trainer) -> None:
        """An Ultralytics callback: stop here if a signal arrived (in DDP: in any rank, see agreed_signal)."""
        from yolopipe.train.ranks import agreed_signal

        signum = agreed_signal(self.signum, trainer)
        if signum is not None:
            raise TrainingInterrupted(signum, self.completed, trainer.epochs)
