"""The copy engine behind `yolopipe stage`: make a directory hold exactly the dataset's files, cheaply.

A copy is trusted only through its marker file, `.yolopipe-stage.json`, written last: it names the source
and params the copy was made for, and the size and mtime of every staged file. Checking an intact copy is
one stat per file (metadata only, nothing is re-read). Each file is placed by `placement` and marked
complete only after its last byte, so after a `kill -9` the next run only does the rest. (No temporary name
and rename per file: on 40,000 small files that bookkeeping cost more than the copying.)
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from yolopipe.dvchashes import DVC_IGNORED_SUFFIXES, TMP_SUFFIX
from yolopipe.errors import PipelineError
from yolopipe.paths import STAGE_MARKER
from yolopipe.stage.placement import Job, place
from yolopipe.stage.resize import place_resized

_IGNORED_NAMES = {".dvc", ".dvcignore", ".gitignore", "data.yaml", STAGE_MARKER}
COPY_THREADS = min(8, os.cpu_count() or 1)  # copying runs in the kernel (sendfile), without the GIL
PROGRESS_FROM = 10_000  # files; below this a non-tty stderr (CI, dvc repro in a log) gets no bar


class FileMeta(Protocol):
    """What a complete staged file must match: an os.stat_result, or a packed dataset's index entry."""

    @property
    def st_size(self) -> int: ...

    @property
    def st_mtime_ns(self) -> int: ...


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
            if name in _IGNORED_NAMES or name.endswith(DVC_IGNORED_SUFFIXES):
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

    def place_missing(todo: list[str]) -> int:
        same_fs = link and os.stat(source).st_dev == os.stat(target).st_dev
        check_free_space(0 if same_fs and max_side is None else sum(files[r].st_size for r in todo), target)
        source_dir, target_dir = f"{source}{os.sep}", f"{target}{os.sep}"  # 40,000 Path joins take 0.5 s
        jobs = [Job(source_dir + rel, target_dir + rel, same_fs, files[rel].st_mode, files[rel].st_mtime_ns,
                    files[rel].st_size) for rel in todo]
        if max_side is None:
            return _place_all(place, jobs, ThreadPoolExecutor, COPY_THREADS)
        # decoding and encoding are CPU bound: processes.
        return _place_all(partial(place_resized, max_side=max_side), jobs, ProcessPoolExecutor,
                          os.cpu_count() or 1)

    return sync_files(files, target, key, max_side is not None, place_missing)


def sync_files(files: Mapping[str, FileMeta], target: Path, key: dict, resized: bool,
               place_missing: Callable[[list[str]], int]) -> SyncResult:
    """Make `target` hold exactly `files` (relative path -> the size and mtime a complete copy has), or trust
    it as such; `place_missing` writes the listed files (into their existing directories) and returns how
    many it hard-linked. The directory copy and the packed dataset's extraction both stage through here."""
    marker = read_marker(target)
    if marker and marker.get("key") == key and marker.get("complete"):
        staged = source_files(target)
        if _intact(staged, marker["files"]) and staged.keys() == files.keys() and all(
                _complete(staged[rel], s, resized) for rel, s in files.items()):
            return SyncResult(len(staged), sum(s.st_size for s in staged.values()), 0, 0)
    if not marker or marker.get("key") != key:  # another source or other params: start afresh
        shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, exist_ok=True)
    # From here on, untrusted until the end. No fsync: a stale "complete" marker that survived a crash is
    # harmless, as trust also needs every file's size and mtime to be the ones it records.
    write_marker(target, {"key": key, "complete": False}, durable=False)
    present = source_files(target)
    for rel in present.keys() - files.keys():  # files the source no longer has
        (target / rel).unlink()
    for leftover in target.rglob(f"*{TMP_SUFFIX}"):  # a killed marker write; per file, older yolopipe
        leftover.unlink()
    todo = [rel for rel, s in files.items() if not _complete(present.get(rel), s, resized)]
    for directory in sorted({os.path.dirname(rel) for rel in todo}):
        (target / directory).mkdir(parents=True, exist_ok=True)
    linked = place_missing(todo)
    # A copy or link has the source's size and mtime; only resized files need a look.
    staged = source_files(target) if resized else files
    write_marker(target, {"key": key, "complete": True,
                          "files": {rel: [s.st_size, s.st_mtime_ns] for rel, s in sorted(staged.items())}})
    return SyncResult(len(staged), sum(s.st_size for s in staged.values()), len(todo), linked)


def _place_all(place: Callable, jobs: list[Job], pool_type: type[Executor], workers: int) -> int:
    """Run `place` on every job, in chunks across `workers`, with a progress bar; the number hard-linked."""
    chunks = _chunks(jobs, max(1, min(256, len(jobs) // (workers * 8))))  # a future per file costs a copy
    linked = 0
    with pool_type(workers) as pool:
        results = pool.map(partial(_place_chunk, place), chunks)  # submits (and forks) before tqdm's thread
        try:
            with progress(len(jobs)) as bar:
                for chunk, chunk_linked in zip(chunks, results, strict=True):
                    linked += chunk_linked
                    bar.update(len(chunk))
        except BaseException:  # Ctrl-C or a failed file: finish the chunks in flight, start no more
            pool.shutdown(cancel_futures=True)
            raise
    return linked


def _chunks(jobs: list[Job], size: int) -> list[list[Job]]:
    """Chunks of `size` jobs in one directory, taking the directories in turn: creating a file locks its
    directory, so threads in different directories (images/train, labels/train) do not wait on each other."""
    by_directory: dict[str, list[Job]] = {}
    for job in jobs:
        by_directory.setdefault(os.path.dirname(job.target), []).append(job)
    per_directory = [[js[i:i + size] for i in range(0, len(js), size)] for js in by_directory.values()]
    return [chunk for turn in itertools.zip_longest(*per_directory) for chunk in turn if chunk]


def _place_chunk(place: Callable, jobs: list[Job]) -> int:
    return sum(place(job) for job in jobs)


def progress(total: int) -> tqdm:
    """A bar with counts and rate on a terminal; on a log, only for long work and a few lines a minute."""
    tty = sys.stderr.isatty()
    interval = 0.5 if tty else 60
    return tqdm(total=total, unit="file", desc="stage", file=sys.stderr, smoothing=0.1, ascii=not tty,
                disable=not (tty or total >= PROGRESS_FROM), mininterval=interval, maxinterval=interval)


def _complete(staged: os.stat_result | None, source: os.stat_result, resized: bool) -> bool:
    # A file gets the source's mtime only after its last byte (see module doc); a resized one has its own size.
    return (staged is not None and staged.st_mtime_ns == source.st_mtime_ns
            and (resized or staged.st_size == source.st_size))


def _intact(staged: dict[str, os.stat_result], recorded: dict[str, list[int]]) -> bool:
    return staged.keys() == recorded.keys() and all(
        [s.st_size, s.st_mtime_ns] == recorded[rel] for rel, s in staged.items())


def read_marker(target: Path) -> dict | None:
    try:
        return json.loads((target / STAGE_MARKER).read_text())
    except (OSError, ValueError):
        return None


def write_marker(target: Path, content: dict, durable: bool = True) -> None:
    tmp = target / (STAGE_MARKER + TMP_SUFFIX)
    with open(tmp, "w") as f:
        f.write(json.dumps(content))  # one write: json.dump's many small ones take longer for 40,000 files
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, target / STAGE_MARKER)
