"""A local directory that holds a copy of models/last.pt and the dvclive files, kept in step after every epoch.

For platforms that sync a directory off the machine themselves: SageMaker uploads /opt/ml/checkpoints to S3
while the job runs and puts it back on the instance that continues a spot-interrupted job. Pointing
YOLOPIPE_CHECKPOINT_DIR there makes a new instance, whose workspace has no models/last.pt, resume from it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class CheckpointMirror:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.last = root / "last.pt"
        self.live = root / "live"

    def restore(self, last: Path, live_dir: Path) -> bool:
        """Copy the mirrored checkpoint to `last` and its dvclive files into `live_dir`, if `last` is missing
        (a new machine). A checkpoint already in the workspace wins: it is at least as recent."""
        if last.is_file() or not self.last.is_file():
            return False
        if self.live.is_dir():  # the curves first: a last.pt in place always has its curves too
            shutil.copytree(self.live, live_dir, dirs_exist_ok=True)
        last.parent.mkdir(parents=True, exist_ok=True)
        _copy_atomically(self.last, last)
        return True

    def after_epoch(self, last: Path, live_dir: Path) -> None:
        """Mirror the epoch just saved: dvclive files first, then the checkpoint, each file replaced whole."""
        self.live.mkdir(parents=True, exist_ok=True)
        if live_dir.is_dir():
            for path in sorted(live_dir.rglob("*")):
                if path.is_file():
                    target = self.live / path.relative_to(live_dir)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    _copy_atomically(path, target)
        _copy_atomically(last, self.last)


def _copy_atomically(source: Path, target: Path) -> None:
    """A reader (or SageMaker's uploader) sees the old file or the new one, never half of it."""
    partial = target.with_name(f".{target.name}.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)
