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

import signal
from pathlib import Path

from ultralytics.models.yolo.detect import DetectionTrainer

from yolopipe.errors import PipelineError
from yolopipe.train.launch import OUTCOME, read_outcome, run_forwarding_signals
from yolopipe.train.ranks import LOCAL_RANK
from yolopipe.train.resume import TrainingInterrupted


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
            forwarded = run_forwarding_signals(cmd)
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
