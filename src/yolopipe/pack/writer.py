"""`yolopipe pack`: write a YOLO dataset as plain tar shards of about `pack.shard_mb` plus an index.

Deterministic: members sorted by path, tar headers with owner 0, mode 0644 and an mtime taken from the
member's md5 (index.py says why), PAX format, and shard names from their position and md5; so the same
files give the same bytes on any machine, whatever their mtimes or owners there.

Incremental: a shard, once written, is never rewritten. New or changed files go into new shards; removed
or replaced members stay in their shard as dead bytes, and a shard left without live members is deleted.
When dead bytes pass `pack.repack_dead_fraction` of all member bytes (or with `--repack`) every shard is
written afresh. The index is written last and atomically, and shards it does not name are deleted only
after it, so a killed pack leaves the previous pack intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from yolopipe.dataset import load_dataset
from yolopipe.dvchashes import TMP_SUFFIX, file_md5, recorded_md5s
from yolopipe.errors import PipelineError
from yolopipe.pack.extract import HashingReader
from yolopipe.pack.index import (
    DATA_YAML,
    FORMAT,
    INDEX_NAME,
    MEMBER_FIELDS,
    Member,
    PackIndex,
    Shard,
    is_packed,
    member_mtime,
    read_index,
)
from yolopipe.params import PackParams
from yolopipe.stage import dataset_description
from yolopipe.stage.copy_engine import source_files

HASH_THREADS = 4  # hashlib releases the GIL on large buffers


@dataclass(frozen=True)
class PackResult:
    shards_dir: Path
    files: int
    bytes: int
    shards: int
    new_shards: int
    written_bytes: int
    """Bytes of the shards written in this run: what `dvc push` uploads next."""
    dead_bytes: int
    repacked: bool
    seconds: float

    @property
    def summary(self) -> str:
        if not self.new_shards:
            what = "nothing new to pack"
        else:
            what = (f"{'repacked into' if self.repacked else 'wrote'} {self.new_shards} shard"
                    f"{'s' if self.new_shards != 1 else ''} ({self.written_bytes / 1e6:.1f} MB)")
        return (f"packed {self.files} files ({self.bytes / 1e6:.1f} MB) into {self.shards} shards in "
                f"{self.shards_dir}: {what}; dead {self.dead_bytes / 1e6:.1f} MB, in {self.seconds:.1f} s")


def default_shards_dir(dataset: Path) -> Path:
    """DATASET.shards beside the dataset directory."""
    root = Path(os.path.abspath(dataset))
    root = root.parent if root.is_file() else root
    return root.with_name(root.name + ".shards")


def pack(dataset: Path, params: PackParams | None = None, out: Path | None = None,
         repack: bool = False) -> PackResult:
    """Pack the dataset at `dataset` into `out` (default DATASET.shards), adding to an existing pack there."""
    started = time.perf_counter()
    params = params or PackParams()
    source = load_dataset(dataset)
    out = Path(os.path.abspath(out or default_shards_dir(dataset)))
    if out == source.root or source.root in out.parents or out in source.root.parents:
        raise PipelineError(f"the pack directory {out} overlaps the dataset {source.root}",
                            hint="write the shards beside the dataset (the default DATASET.shards)")
    if out.exists() and not is_packed(out) and any(out.iterdir()):
        raise PipelineError("refusing to pack into a non-empty directory that is not a pack", path=out)
    files = source_files(source.root)
    rels = sorted(files)
    md5s = _md5s(source.root, rels)
    old = read_index(out) if is_packed(out) else None
    members: dict[str, Member] = {}
    shards: dict[str, Shard] = {}
    if old and not repack:
        intact = {name for name, s in old.shards.items() if _shard_size(out / name) == s.size}
        members = {rel: m for rel in rels if (m := old.members.get(rel)) and m.shard in intact
                   and (m.md5, m.size) == (md5s[rel], files[rel].st_size)}
        live = {m.shard for m in members.values()}
        shards = {name: s for name, s in old.shards.items() if name in live}  # an all-dead shard goes
        new_bytes = sum(files[rel].st_size for rel in rels if rel not in members)
        dead = sum(s.member_bytes for s in shards.values()) - sum(m.size for m in members.values())
        if dead > params.repack_dead_fraction * (dead + sum(m.size for m in members.values()) + new_bytes):
            repack, members, shards = True, {}, {}
    out.mkdir(parents=True, exist_ok=True)
    todo = [rel for rel in rels if rel not in members]
    first = 1 + max((int(name.split("-")[0]) for name in shards), default=-1)
    written = []
    for seq, group in enumerate(_groups(todo, files, params.shard_mb << 20), start=first):
        shard = _write_shard(out, seq, group, source.root, md5s)
        written.append(shard)
        shards[shard.name] = shard
        members.update({rel: Member(files[rel].st_size, md5s[rel], shard.name) for rel in group})
    index = PackIndex(out, shards, dict(sorted(members.items())))
    _write_atomic(out / DATA_YAML, yaml.safe_dump(dataset_description(source), sort_keys=False))
    _write_atomic(out / INDEX_NAME, _index_text(index))
    for path in out.iterdir():  # shards of an earlier pack that no member uses, leftovers of a killed one
        if (path.name.endswith(".tar") and path.name not in shards) or path.name.endswith(TMP_SUFFIX):
            path.unlink()
    return PackResult(out, len(members), index.live_bytes, len(shards), len(written),
                      sum(s.size for s in written), index.dead_bytes, repack and bool(old),
                      time.perf_counter() - started)


def _md5s(root: Path, rels: list[str]) -> dict[str, str]:
    """rel -> md5, from DVC's state where `dvc add` already hashed the file, else read and hashed."""
    paths = {rel: os.path.join(root, rel) for rel in rels}
    known = recorded_md5s(list(paths.values()), root)
    missing = [rel for rel in rels if paths[rel] not in known]
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        hashed = dict(zip(missing, pool.map(lambda rel: file_md5(Path(paths[rel])), missing), strict=True))
    return {rel: known.get(paths[rel]) or hashed[rel] for rel in rels}


def _groups(rels: list[str], files: dict, limit: int) -> list[list[str]]:
    """Consecutive runs of members whose contents add up to about `limit` bytes (a larger file alone)."""
    groups: list[list[str]] = []
    size = 0
    for rel in rels:
        if not groups or (size and size + files[rel].st_size > limit):
            groups.append([])
            size = 0
        groups[-1].append(rel)
        size += files[rel].st_size
    return groups


def _write_shard(out: Path, seq: int, rels: list[str], root: Path, md5s: dict[str, str]) -> Shard:
    tmp = out / f"{seq:05d}.tar{TMP_SUFFIX}"
    member_bytes = 0
    with open(tmp, "wb") as raw:
        sink = _HashingWriter(raw)
        with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel in rels:
                path = root / rel
                with open(path, "rb") as stream:
                    info = tarfile.TarInfo(rel)
                    info.size = os.fstat(stream.fileno()).st_size
                    info.mtime, info.mode, info.uid, info.gid = member_mtime(md5s[rel]), 0o644, 0, 0
                    reader = HashingReader(stream)
                    try:
                        tar.addfile(info, reader)
                    except OSError as exc:
                        raise PipelineError(f"{rel} changed while it was packed ({exc})", path=path,
                                            hint="pack again once nothing writes into the dataset") from None
                if reader.md5.hexdigest() != md5s[rel]:
                    raise PipelineError(f"{rel} changed since its md5 was taken", path=path,
                                        hint="pack again once nothing writes into the dataset")
                member_bytes += info.size
        raw.flush()
        os.fsync(raw.fileno())
    md5 = sink.md5.hexdigest()
    name = f"{seq:05d}-{md5[:12]}.tar"
    os.replace(tmp, out / name)
    return Shard(name, sink.size, md5, len(rels), member_bytes)


def _index_text(index: PackIndex) -> str:
    """The index as JSON, one member per line (readable, and git-diffable if anyone tracks it there)."""
    shards = [{"name": s.name, "size": s.size, "md5": s.md5, "members": s.members,
               "member_bytes": s.member_bytes} for s in index.shards.values()]
    rows = ",\n".join(json.dumps([rel, m.size, m.md5, m.shard]) for rel, m in index.members.items())
    return (f'{{"format": {FORMAT}, "checksum": "md5", "member_fields": {json.dumps(MEMBER_FIELDS)},\n'
            f'"shards": {json.dumps(shards, indent=1)},\n"members": [\n{rows}\n]}}\n')


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _shard_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


class _HashingWriter:
    """A write-only file object that hashes and counts what tarfile writes."""

    def __init__(self, raw) -> None:
        self.raw, self.md5, self.size = raw, hashlib.md5(), 0

    def write(self, data: bytes) -> int:
        self.md5.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def tell(self) -> int:
        return self.size
