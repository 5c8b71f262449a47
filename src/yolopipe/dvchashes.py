"""Reuse the md5s DVC already computed for dataset files instead of reading every byte again.

We ask DVC's own state database, through DVC's API, because it is what `dvc status` trusts: an entry is
only returned while the file's inode, mtime and size still match the moment DVC hashed it. The `.dir`
manifest in the cache is not enough on its own: after a `git checkout` without `dvc checkout` it
describes files that are no longer in the workspace.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from yolopipe.paths import STAGE_MARKER

# What .dvcignore keeps out of the staged copy's hash: the trust marker, half-written temporary files and
# Ultralytics' label caches, which carry this machine's mtimes or appear while training.
TMP_SUFFIX = ".yolopipe-tmp"
DVC_IGNORED_SUFFIXES = (".cache", ".cache.npy", TMP_SUFFIX)


def hashed_files(root: Path) -> list[Path]:
    """The files of a staged copy as DVC hashes them (see .dvcignore)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != STAGE_MARKER
                  and not p.name.endswith(DVC_IGNORED_SUFFIXES))


def find_dvc_root(start: Path) -> Path | None:
    """The nearest directory at or above `start` holding a `.dvc` directory."""
    for directory in (start, *start.parents):
        if (directory / ".dvc").is_dir():
            return directory
    return None


def recorded_md5s(files: list[str], start: Path) -> dict[str, str]:
    """Absolute path -> md5 for the files whose hash DVC recorded and which have not changed since."""
    root = find_dvc_root(start)
    if root is None or not files:
        return {}
    try:
        from dvc.repo import Repo  # slow to import; only paid inside DVC repositories

        with Repo(str(root)) as repo:
            found = {}
            for path, meta, hash_info in repo.state.get_many(files, repo.fs, {}):
                if meta is not None and hash_info is not None and hash_info.name == "md5":
                    found[path] = hash_info.value
            return found
    except Exception:  # a broken or foreign DVC setup only costs speed: we hash the files ourselves
        return {}


def dataset_md5(root: Path, lock: Path = Path("dvc.lock")) -> str:
    """The md5 DVC recorded for the staged copy in dvc.lock (so a deployer can match it there), else an md5
    over every file DVC would hash (relative path and md5, sorted), reusing md5s DVC already knows."""
    recorded = locked_md5(root, lock)
    if recorded:
        return recorded
    files = hashed_files(root)
    known = recorded_md5s([str(p.resolve()) for p in files], root.resolve())
    digest = hashlib.md5()
    for file in files:
        md5 = known.get(str(file.resolve())) or file_md5(file)
        digest.update(f"{file.relative_to(root).as_posix()}\0{md5}\n".encode())
    return digest.hexdigest()


def locked_md5(data_root: Path, lock: Path = Path("dvc.lock")) -> str | None:
    """The md5 dvc.lock records for `data_root` as some stage's output, if any."""
    # absolute(), not resolve(): data/staged may be a link to the machine's staging disk.
    data_root, project = data_root.absolute(), lock.parent.absolute()
    if not lock.is_file() or not data_root.is_relative_to(project):
        return None
    import yaml

    wanted = data_root.relative_to(project).as_posix()
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    for stage in stages.values():
        for out in stage.get("outs", []):
            if out.get("path") == wanted and out.get("md5"):
                return out["md5"]
    return None


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
