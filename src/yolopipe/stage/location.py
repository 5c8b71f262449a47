"""Where a staged copy lives: in the checkout (data/staged), or in the machine's staging directory
(YOLOPIPE_STAGE_DIR) with data/staged a symbolic link to it.

On a staging directory every checkout gets its own folder, so concurrent runs (`dvc queue start -j N`, a
sweep's trials) never write into one copy. A temporary workspace (DVC's queue, a sweep trial) is deleted
when its experiment is done, and its copy would fill the disk, one dataset per experiment. So each folder
has an owner file beside it naming the link that uses it, and staging removes the folders whose link is
gone or points elsewhere. Only folders with our owner file and our trust marker are ever removed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from yolopipe.paths import STAGE_MARKER

OWNER_SUFFIX = ".owner"


@dataclass(frozen=True)
class Reaped:
    folders: int = 0
    bytes: int = 0

    @property
    def summary(self) -> str:
        if not self.folders:
            return ""
        copies = "copy" if self.folders == 1 else "copies"
        return f"; removed {self.folders} {copies} no checkout links to any more ({self.bytes / 1e6:.1f} MB)"


def copy_folder(staged_root: Path, stage_dir: Path | None) -> Path:
    """The folder the copy for the checkout at `staged_root` (absolute) lives in."""
    if stage_dir is None:
        return staged_root
    checkout = hashlib.sha256(str(staged_root).encode()).hexdigest()[:8]
    return Path(os.path.abspath(stage_dir)) / f"{staged_root.parent.parent.name}-{staged_root.name}-{checkout}"


def point(staged_root: Path, target: Path) -> None:
    """Make staged_root the copy itself (no staging directory) or a symbolic link to it, then own it."""
    if staged_root.is_symlink():
        if target != staged_root and Path(os.readlink(staged_root)) == target:
            _own(staged_root, target)
            return
        staged_root.unlink()
    if target != staged_root:
        if staged_root.exists():
            shutil.rmtree(staged_root)
        staged_root.parent.mkdir(parents=True, exist_ok=True)
        staged_root.symlink_to(target, target_is_directory=True)
        _own(staged_root, target)  # after the link: a reaper never sees an owner whose link is not there yet


def reap_abandoned(stage_dir: Path, keep: Path | None = None) -> Reaped:
    """Remove the folders under `stage_dir` whose owner's link is gone or points elsewhere."""
    folders = size = 0
    for owner_file in Path(os.path.abspath(stage_dir)).glob(f"*{OWNER_SUFFIX}"):
        folder = owner_file.with_suffix("")
        if folder == keep or _still_linked(owner_file, folder) or not (folder / STAGE_MARKER).is_file():
            continue  # in use, or not a staged copy of ours (a stage dir such as /mnt/nvme holds other things)
        size += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
        shutil.rmtree(folder, ignore_errors=True)
        owner_file.unlink(missing_ok=True)
        folders += 1
    return Reaped(folders, size)


def _own(staged_root: Path, target: Path) -> None:
    owner_file = target.with_name(target.name + OWNER_SUFFIX)
    if not owner_file.is_file() or owner_file.read_text().strip() != str(staged_root):
        target.parent.mkdir(parents=True, exist_ok=True)
        owner_file.write_text(f"{staged_root}\n")


def _still_linked(owner_file: Path, folder: Path) -> bool:
    try:
        link = Path(owner_file.read_text().strip())
        return link.is_symlink() and Path(os.readlink(link)) == folder
    except (OSError, ValueError):
        return True  # unreadable: not ours to judge
