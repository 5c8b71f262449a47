"""The index of a packed dataset: which member is in which shard, with its size and md5.

`DATASET.shards/pack-index.json` is the single source of truth: a reader trusts no member name, size or
shard that the index does not vouch for. Reading it checks every name (no `..`, no absolute path, no
duplicate), so a hostile or damaged index fails here with the member's name, before anything is written.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from pathlib import Path

from yolopipe.errors import PipelineError

INDEX_NAME = "pack-index.json"
DATA_YAML = "data.yaml"  # the dataset's description, splits relative to the dataset root
FORMAT = 1
MEMBER_FIELDS = ["path", "size", "md5", "shard"]  # each member is one JSON list, one line, in this order
# Tar headers carry this mtime plus a number taken from the member's md5: the same content gives the same
# bytes on every machine, and a member whose content changes gets another mtime, which is what stage's
# completeness rule (size and mtime) compares.
MTIME_BASE = 1_000_000_000


@dataclass(frozen=True)
class Shard:
    name: str
    size: int
    md5: str
    members: int
    """Members written into it, live or dead."""
    member_bytes: int
    """Bytes of those members' contents, live or dead."""


@dataclass(frozen=True)
class Member:
    size: int
    md5: str
    shard: str

    @property
    def st_size(self) -> int:  # what stage's copy engine compares, as for a file's stat
        return self.size

    @property
    def st_mtime_ns(self) -> int:
        return member_mtime(self.md5) * 1_000_000_000


@dataclass(frozen=True)
class PackIndex:
    root: Path
    shards: dict[str, Shard]
    """In the order they were written."""
    members: dict[str, Member]
    """Relative path -> member, sorted by path."""

    @property
    def live_bytes(self) -> int:
        return sum(m.size for m in self.members.values())

    @property
    def dead_bytes(self) -> int:
        return sum(s.member_bytes for s in self.shards.values()) - self.live_bytes


def member_mtime(md5: str) -> int:
    """The mtime (seconds) of a member in its tar header and in the staged copy."""
    return MTIME_BASE + int(md5[:7], 16)


def is_packed(path: str | Path) -> bool:
    """True when `path` is a packed dataset (a `.shards` directory holding an index)."""
    return (Path(path) / INDEX_NAME).is_file()


def read_index(root: str | Path) -> PackIndex:
    """Read and check `root`'s index; raise PipelineError naming the first bad member or shard."""
    root = Path(root)
    path = root / INDEX_NAME
    try:
        raw = json.loads(path.read_text())
        shards = {s["name"]: Shard(s["name"], int(s["size"]), str(s["md5"]), int(s["members"]),
                                   int(s["member_bytes"])) for s in raw["shards"]}
        rows = [(str(rel), int(size), str(md5), str(shard)) for rel, size, md5, shard in raw["members"]]
        if raw.get("format") != FORMAT or raw.get("member_fields") != MEMBER_FIELDS:
            raise ValueError(f"format {raw.get('format')!r}, expected {FORMAT}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"not a readable pack index ({exc})", path=path,
                            hint="pack the dataset again with `yolopipe pack`") from None
    for name in shards:
        if "/" in name or not name.endswith(".tar") or name.startswith("."):
            raise PipelineError(f"the index names a shard '{name}' that is not a plain .tar file name", path=path)
    members = {}
    for rel, size, md5, shard in rows:
        check_member_name(rel, f"the index {path}")
        if rel in members:
            raise PipelineError(f"member {rel} is listed twice", path=path,
                                hint="a pack writes each member once; pack the dataset again")
        if shard not in shards:
            raise PipelineError(f"member {rel} is in shard {shard}, which the index does not list", path=path)
        members[rel] = Member(size, md5, shard)
    return PackIndex(root, shards, members)


def check_member_name(name: str, where: str) -> None:
    """Refuse a member path that could land outside the copy (tar slip) or that no dataset file has."""
    normal = posixpath.normpath(name)
    if (not name or name.startswith("/") or "\\" in name or normal != name or normal == "."
            or normal.startswith("../") or normal == ".."):
        raise PipelineError(f"member {name!r} in {where} is not a plain relative path inside the dataset "
                            "(absolute, `..`, or not normalised): refusing to extract it",
                            hint="this is not a pack `yolopipe pack` wrote; do not stage it")
