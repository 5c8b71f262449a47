"""stage: copy the dataset once onto local disk and describe the copy for Ultralytics.

Training reads the staged copy, never the source, so Ultralytics' label caches land in the copy and the
DVC-tracked dataset stays byte-identical.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from yolopipe.dataset import load_dataset
from yolopipe.errors import PipelineError

# Ultralytics' label caches and DVC metadata are never part of the copy.
IGNORED = shutil.ignore_patterns("*.cache", "*.cache.npy", ".dvc", ".dvcignore", ".gitignore")


@dataclass(frozen=True)
class StageResult:
    staged_root: Path
    data_yaml: Path
    files: int
    bytes: int

    @property
    def summary(self) -> str:
        return f"staged {self.files} files ({self.bytes / 1e6:.1f} MB) into {self.staged_root}"


def stage(dataset: Path, staged_root: Path) -> StageResult:
    """Copy the dataset under `dataset` into `staged_root` and write the data.yaml training reads."""
    source = load_dataset(dataset)
    staged_root = staged_root.resolve()
    if staged_root == source.root or source.root in staged_root.parents or staged_root in source.root.parents:
        raise PipelineError(f"the staging directory {staged_root} overlaps the dataset {source.root}",
                            hint="stage into a directory outside the dataset")
    splits = {name: [_relative_entry(p, source.root, source.yaml_path) for p in parts]
              for name, parts in source.splits.items()}
    # Copy beside the target and rename at the end: an interrupted copy is never mistaken for a finished one.
    partial = staged_root.with_name(staged_root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source.root, partial, ignore=IGNORED)
    description = {**{name: entries[0] if len(entries) == 1 else entries for name, entries in splits.items()},
                   "nc": source.nc, "names": dict(enumerate(source.names))}
    data_yaml = partial / "data.yaml"
    data_yaml.unlink(missing_ok=True)
    data_yaml.write_text("# Written by `yolopipe stage`; Ultralytics reads this copy.\n"
                         + yaml.safe_dump(description, sort_keys=False))
    if staged_root.exists():
        shutil.rmtree(staged_root)
    partial.rename(staged_root)
    files = [p for p in staged_root.rglob("*") if p.is_file()]
    return StageResult(staged_root, staged_root / "data.yaml", len(files), sum(p.stat().st_size for p in files))


def _relative_entry(path: Path, root: Path, yaml_path: Path) -> str:
    if path != root and root not in path.parents:
        raise PipelineError(f"split {path} lies outside the dataset root {root}; it would not be staged",
                            path=yaml_path, hint="keep every split under the dataset's `path`")
    return path.relative_to(root).as_posix()
