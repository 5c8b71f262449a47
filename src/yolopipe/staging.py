"""The copy engine behind `yolopipe stage`: make a directory hold exactly the dataset's files, cheaply.

A copy is trusted only through its marker file, `.yolopipe-stage.json`, written last: it names the source
and params the copy was made for, and the size and mtime of every staged file. Checking an intact copy is
one stat per file (metadata only, nothing is re-read). Every file is written under a temporary name and
renamed once complete, with the source's mtime, so after a `kill -9` a file with its final name and the
source's mtime is complete and the next run only does the rest.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import stat
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from yolopipe.dataset import IMAGE_SUFFIXES
from yolopipe.errors import PipelineError

MARKER = ".yolopipe-stage.json"  # listed in .dvcignore: its mtimes must not enter the hash DVC records
_TMP = ".yolopipe-tmp"
_IGNORED_NAMES = {".dvc", ".dvcignore", ".gitignore", "data.yaml", MARKER}


def hashed_files(root: Path) -> list[Path]:
    """The files of a staged copy as DVC hashes them (.dvcignore): not the marker, half-written temporary
    files or Ultralytics' label caches, which carry this machine's mtimes or appear while training."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MARKER
                  and not p.name.endswith(_IGNORED_SUFFIXES))
_IGNORED_SUFFIXES = (".cache", ".cache.npy", _TMP)
_FICLONE = 0x40049409  # ioctl: copy-on-write clone (btrfs, xfs); fails fast elsewhere
_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


@dataclass(frozen=True)
class SyncResult:
    files: int
    bytes: int
    written: int
    """Files copied, linked or resized in this run (0: the copy was intact)."""
    linked: int


def source_files(root: Path) -> dict[str, os.stat_result]:
    """Relative path -> stat of every dataset file under root (no caches, DVC/git metadata or data.yaml)."""
    files = {}
    for parent, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != ".dvc")
        rel_parent = os.path.relpath(parent, root)
        for name in names:
            if name in _IGNORED_NAMES or name.endswith(_IGNORED_SUFFIXES):
                continue
            rel = name if rel_parent == "." else f"{rel_parent}/{name}"
            files[rel] = os.stat(os.path.join(parent, name))
    return files


def check_free_space(needed: int, target: Path, usage: Callable | None = None) -> None:
    """Fail before copying when the file system of `target` has less than `needed` bytes free."""
    usage = usage or shutil.disk_usage
    probe = target
    while not probe.exists():
        probe = probe.parent
    free = usage(probe).free
    if needed > free:
        raise PipelineError(f"staging needs {needed / 1e9:.2f} GB free in {target} but only "
                            f"{free / 1e9:.2f} GB are available",
                            hint="free space there, or point YOLOPIPE_STAGE_DIR at a larger local disk")


def sync(source: Path, target: Path, key: dict, link: bool, max_side: int | None) -> SyncResult:
    """Make `target` an exact copy of the dataset files under `source` (or trust it as one)."""
    files = source_files(source)
    marker = _read_marker(target)
    if marker and marker.get("key") == key and marker.get("complete"):
        staged = source_files(target)
        if _intact(staged, marker["files"]) and staged.keys() == files.keys() and all(
                _complete(staged[rel], s, max_side is not None) for rel, s in files.items()):
            return SyncResult(len(staged), sum(s.st_size for s in staged.values()), 0, 0)
    if not marker or marker.get("key") != key:  # another source or other params: start afresh
        shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    _write_marker(target, {"key": key, "complete": False})  # from here on, untrusted until the end
    present = source_files(target)
    for rel in present.keys() - files.keys():  # files the source no longer has
        (target / rel).unlink()
    for leftover in target.rglob(f"*{_TMP}"):
        leftover.unlink()
    todo = [rel for rel, s in files.items() if not _complete(present.get(rel), s, max_side is not None)]
    same_fs = link and os.stat(source).st_dev == os.stat(target).st_dev
    check_free_space(0 if same_fs and max_side is None else sum(files[r].st_size for r in todo), target)
    for directory in sorted({os.path.dirname(rel) for rel in todo}):
        (target / directory).mkdir(parents=True, exist_ok=True)
    jobs = [(str(source / rel), str(target / rel), same_fs, files[rel].st_mode, files[rel].st_mtime_ns)
            for rel in todo]
    if max_side is None:
        with ThreadPoolExecutor(8) as pool:  # I/O bound: keep several files in flight
            linked = sum(pool.map(_place, jobs, chunksize=64))
    else:
        from yolopipe.resize import place_resized

        with ProcessPoolExecutor(os.cpu_count() or 1) as pool:  # decoding and encoding are CPU bound
            linked = sum(pool.map(place_resized, jobs, [max_side] * len(jobs), chunksize=32))
    # A copy or link has the source's size and mtime; only resized files need a look.
    staged = source_files(target) if max_side is not None else files
    _write_marker(target, {"key": key, "complete": True,
                           "files": {rel: [s.st_size, s.st_mtime_ns] for rel, s in sorted(staged.items())}})
    return SyncResult(len(staged), sum(s.st_size for s in staged.values()), len(todo), linked)


def _complete(staged: os.stat_result | None, source: os.stat_result, resized: bool) -> bool:
    # Files land under their final name only when complete, with the source's mtime (see module doc).
    return (staged is not None and staged.st_mtime_ns == source.st_mtime_ns
            and (resized or staged.st_size == source.st_size))


def _intact(staged: dict[str, os.stat_result], recorded: dict[str, list[int]]) -> bool:
    return staged.keys() == recorded.keys() and all(
        [s.st_size, s.st_mtime_ns] == recorded[rel] for rel, s in staged.items())


def _place(job: tuple[str, str, bool, int, int]) -> bool:
    """Put one file at its staged path; True when it was hard-linked."""
    src, dst, same_fs, mode, mtime_ns = job
    tmp = dst + _TMP
    if same_fs and _reflink(src, tmp):
        pass
    elif same_fs and not mode & _WRITE_BITS and not _rewritten_by_ultralytics(src):
        # Only files nobody may write (DVC's protected cache links) are hard-linked: the link shares the
        # source's inode, and a read-only inode makes a writer fail instead of changing the source.
        try:
            if os.path.lexists(dst):
                os.unlink(dst)
            os.link(src, dst, follow_symlinks=True)  # atomic: complete under its final name at once
            return True
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
                raise
            shutil.copyfile(src, tmp)
    else:
        shutil.copyfile(src, tmp)
    finish(tmp, dst, mtime_ns)
    return False


def finish(tmp: str, dst: str, mtime_ns: int) -> None:
    """Give a written file the source's mtime and its final name (the mark of a complete file)."""
    os.utime(tmp, ns=(mtime_ns, mtime_ns))
    os.replace(tmp, dst)


_reflink_works = True


def _reflink(src: str, dst: str) -> bool:
    global _reflink_works
    if not _reflink_works:
        return False
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
            return True
        except OSError:
            _reflink_works = False  # ext4 and friends: don't ask again for every file
    os.unlink(dst)
    return False


def _rewritten_by_ultralytics(path: str) -> bool:
    """Ultralytics rewrites, in place, a JPEG without its end marker ("corrupt JPEG restored and saved"):
    such a file is copied, never linked."""
    if os.path.splitext(path)[1].lower() not in (".jpg", ".jpeg"):
        return False
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < 2:
            return True
        f.seek(-2, os.SEEK_END)
        return f.read() != b"\xff\xd9"


def is_image(rel: str) -> bool:
    return os.path.splitext(rel)[1].lower() in IMAGE_SUFFIXES


def _read_marker(target: Path) -> dict | None:
    try:
        return json.loads((target / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _write_marker(target: Path, content: dict) -> None:
    tmp = target / (MARKER + _TMP)
    with open(tmp, "w") as f:
        json.dump(content, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target / MARKER)
