"""Reuse the md5s DVC already computed for dataset files instead of reading every byte again.

We ask DVC's own state database, through DVC's API, because it is what `dvc status` trusts: an entry is
only returned while the file's inode, mtime and size still match the moment DVC hashed it. The `.dir`
manifest in the cache is not enough on its own: after a `git checkout` without `dvc checkout` it
describes files that are no longer in the workspace.
"""

from __future__ import annotations

from pathlib import Path


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
