"""Extract a packed dataset's members into the staged copy: shards in parallel, each read once as a stream.

Nothing in a shard is trusted on its own. Every member name is checked before anything is written (tar
slip, symlinks, duplicates), every written member's md5 and size must be the index's before it gets its
mtime (the mark of a complete file, see stage/placement.py), and the whole shard's md5 is compared at its
end. A shard that fails any check raises a PipelineError naming it and the member; the copy's marker is
then never written "complete", so the next run extracts what is still missing. The shards are only read.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import tarfile
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from yolopipe.dvchashes import TMP_SUFFIX
from yolopipe.errors import PipelineError
from yolopipe.pack.index import PackIndex, check_member_name, member_mtime
from yolopipe.stage.copy_engine import check_free_space, progress
from yolopipe.stage.placement import Job, create, is_image, mark_complete
from yolopipe.stage.resize import place_resized

READ_BLOCK = 1 << 20
PR_SET_PDEATHSIG = 1  # prctl(2)


def extract_members(index: PackIndex, todo: list[str], target: Path, max_side: int | None) -> int:
    """Write the members `todo` (relative paths the index lists) under `target`; returns 0 (nothing is
    hard-linked). Directories exist already (the copy engine makes them)."""
    by_shard: dict[str, dict[str, tuple[int, str]]] = {}
    for rel in todo:
        member = index.members[rel]
        by_shard.setdefault(member.shard, {})[rel] = (member.size, member.md5)
    for name in by_shard:  # cheap checks first: a missing or cut-short shard fails before any work
        shard, path = index.shards[name], index.root / name
        if not path.is_file():
            raise PipelineError(f"the index names shard {name}, which is missing", path=index.root,
                                hint="`dvc pull` the shards directory, or pack the dataset again")
        if (size := path.stat().st_size) != shard.size:
            raise PipelineError(f"shard {name} is {size} bytes but the index says {shard.size}: truncated or "
                                "replaced", path=path, hint="`dvc pull` (or `dvc checkout`) the shards again")
    check_free_space(sum(index.members[rel].size for rel in todo), target)
    work = [(str(index.root / name), index.shards[name].md5, wanted) for name, wanted in by_shard.items()]
    extract = partial(extract_shard, target=str(target), max_side=max_side)
    if len(work) <= 1:  # one shard: no pool to start
        with progress(len(todo)) as bar:
            for item in work:
                bar.update(extract(*item))
        return 0
    # The workers fork before tqdm's monitor thread starts, and die with this process (a kill -9 of the
    # stage must not leave them writing into the copy the next run repairs).
    with ProcessPoolExecutor(min(len(work), os.cpu_count() or 1), initializer=_die_with_parent) as pool:
        futures = [pool.submit(extract, *item) for item in work]
        try:
            with progress(len(todo)) as bar:
                for future in futures:
                    bar.update(future.result())
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return 0


def extract_shard(path: str, md5: str, wanted: dict[str, tuple[int, str]], target: str,
                  max_side: int | None) -> int:
    """Stream one shard, writing the `wanted` members (path -> size, md5); the number written."""
    name = os.path.basename(path)
    seen: set[str] = set()
    with open(path, "rb") as raw:
        stream = HashingReader(raw)
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    check_member_name(member.name, f"shard {name}")
                    if member.name in seen:
                        raise PipelineError(f"member {member.name} appears twice in shard {name}", path=path,
                                            hint="a pack writes each member once; pack the dataset again")
                    seen.add(member.name)
                    if member.issym() or member.islnk():
                        raise PipelineError(f"member {member.name} in shard {name} is a link to "
                                            f"{member.linkname!r}: packs hold regular files only", path=path)
                    if not member.isfile():
                        raise PipelineError(f"member {member.name} in shard {name} is not a regular file",
                                            path=path)
                    if member.name in wanted:
                        _write_member(tar.extractfile(member), member.name, *wanted[member.name], name,
                                      f"{target}{os.sep}{member.name}", max_side)
            stream.drain()
        except (tarfile.TarError, EOFError) as exc:
            raise PipelineError(f"shard {name} is not a readable tar file ({exc})", path=path,
                                hint="`dvc pull` the shards again, or pack the dataset again") from None
    if missing := sorted(wanted.keys() - seen):
        raise PipelineError(f"the index puts member {missing[0]} in shard {name}, which does not hold it"
                            f"{f' ({len(missing) - 1} more)' if len(missing) > 1 else ''}", path=path)
    if stream.md5.hexdigest() != md5:
        raise PipelineError(f"shard {name}'s md5 is {stream.md5.hexdigest()}, the index says {md5}",
                            path=path, hint="the shard changed after packing: `dvc pull` it again")
    return len(wanted)


def _write_member(source, rel: str, size: int, md5: str, shard: str, dst: str, max_side: int | None) -> None:
    """Write one member under its final name, checked against the index before it is marked complete."""
    mtime_ns = member_mtime(md5) * 1_000_000_000
    resize = max_side is not None and is_image(rel)
    written = dst + TMP_SUFFIX if resize else dst  # a full-size image is not the staged file: never mark it
    fd = create(written)
    try:
        digest, done = hashlib.md5(), 0
        while chunk := source.read(READ_BLOCK):
            digest.update(chunk)
            done += len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        if done != size or digest.hexdigest() != md5:
            os.unlink(written)
            raise PipelineError(f"member {rel} in shard {shard} has md5 {digest.hexdigest()} ({done} bytes), "
                                f"the index says {md5} ({size} bytes)",
                                hint="the shard is damaged: `dvc pull` it again")
        if not resize:
            mark_complete(fd, mtime_ns)
    finally:
        os.close(fd)
    if resize:
        place_resized(Job(written, dst, False, 0o644, mtime_ns, size), max_side)
        os.unlink(written)


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: workers end when they next read the closed queue
        pass


class HashingReader:
    """A read-only file object that hashes every byte tarfile reads, so a shard is read once."""

    def __init__(self, raw) -> None:
        self.raw, self.md5 = raw, hashlib.md5()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.md5.update(data)
        return data

    def drain(self) -> None:
        """Hash what tarfile did not need to read (the zero blocks after the last member)."""
        while self.read(READ_BLOCK):
            pass
