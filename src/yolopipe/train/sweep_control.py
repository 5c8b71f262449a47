"""A sweep's say over a training run: finish after this epoch, and wait until each epoch has been judged.

`yolopipe sweep` (yolopipe.sweep.trial) reads the per-epoch dvclive series while `dvc exp run` trains. Left
alone, training would race ahead of the scheduler: on a loaded machine a trial could finish all its epochs
before ASHA's stop reached it. With an epoch gate, training waits after each epoch until the trial writes
that epoch's number to the gate file, and the trial writes it only once the scheduler has decided; a stop
is written to the stop file before that. So an early stop always lands at the epoch it was decided at.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from yolopipe import paths

GATE_TIMEOUT_S = 600.0  # a sweep that stops answering must not hold a GPU forever: training then goes on
GATE_POLL_S = 0.05


@dataclass(frozen=True)
class SweepControl:
    stop_file: Path
    """Once it exists, training ends after the epoch in progress, as at a train.max_hours budget."""
    gate_file: Path | None = None
    """Holds the last epoch the sweep has judged; training waits for each epoch's number. None: no wait."""
    timeout_s: float = GATE_TIMEOUT_S

    @classmethod
    def from_env(cls, environ=os.environ) -> SweepControl | None:
        stop_file, gate_file = environ.get(paths.STOP_FILE_ENV), environ.get(paths.EPOCH_GATE_ENV)
        if not stop_file:
            return None
        return cls(Path(stop_file), Path(gate_file) if gate_file else None)

    def after_epoch(self, trainer) -> None:
        """An on_fit_epoch_end callback, after the epoch's dvclive step is on disk and before Ultralytics'
        end-of-epoch stop check. The extra call after training (final validation) finds trainer.stop set."""
        if trainer.stop:
            return
        epoch = trainer.epoch + 1
        if self.gate_file is not None and epoch < trainer.epochs:
            self.wait_for_judgement(epoch)
        if self.stop_file.exists():
            print(f"yolopipe train: {self.stop_file} asks to finish; stopping after epoch {epoch}", flush=True)
            trainer.stop = True

    def wait_for_judgement(self, epoch: int) -> bool:
        """Wait until the gate file says `epoch` (or later) or the stop file exists; False after the timeout."""
        deadline = time.monotonic() + self.timeout_s
        while not self.stop_file.exists() and self.judged() < epoch:
            if time.monotonic() > deadline:
                print(f"yolopipe train: warning: no sweep decision on epoch {epoch} after {self.timeout_s:.0f} s "
                      f"({self.gate_file}); training goes on", flush=True)
                return False
            time.sleep(GATE_POLL_S)
        return True

    def judged(self) -> int:
        try:
            return int(self.gate_file.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):  # not written yet, or caught between write and rename
            return 0
