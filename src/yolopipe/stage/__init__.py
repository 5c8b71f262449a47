"""stage: copy the dataset once onto local disk and describe the copy for Ultralytics.

Training reads the staged copy, never the source, so Ultralytics' label caches land in the copy and the
DVC-tracked dataset stays byte-identical. The copy lives at `staged_root` (data/staged, the path dvc.yaml
tracks), or, with a machine-specific staging directory (YOLOPIPE_STAGE_DIR, e.g. /mnt/nvme), in that
directory with `staged_root` a symbolic link to it: DVC hashes through the link, so dvc.lock records the
same contents wherever the copy lives.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import yaml

from yolopipe.dataset import Dataset, load_dataset
from yolopipe.errors import PipelineError
from yolopipe.pack.index import DATA_YAML, is_packed, read_index
from yolopipe.params import StageParams
from yolopipe.stage.copy_engine import sync, sync_files
from yolopipe.stage.location import Reaped, copy_folder, point, reap_abandoned

FORMAT = 1  # bump when the staged layout changes, so old copies are not trusted


@dataclass(frozen=True)
class StageResult:
    staged_root: Path
    data_yaml: Path
    files: int
    bytes: int
    written: int = 0
    linked: int = 0
    location: Path | None = None
    """Where the files are when staged_root is a link to a staging directory."""
    seconds: float = 0.0
    reaped: Reaped = Reaped()
    """Copies of deleted workspaces removed from the staging directory."""

    @property
    def summary(self) -> str:
        where = f"{self.staged_root} -> {self.location}" if self.location else str(self.staged_root)
        if not self.written:
            return (f"staged copy intact: {self.files} files ({self.bytes / 1e6:.1f} MB) in {where}, "
                    f"checked in {self.seconds:.1f} s{self.reaped.summary}")
        rate = self.written / self.seconds if self.seconds else 0
        return (f"staged {self.files} files ({self.bytes / 1e6:.1f} MB) into {where}: {self.written} written"
                f"{f', {self.linked} hard-linked' if self.linked else ''} in {self.seconds:.1f} s ({rate:.0f} files/s)"
                f"{self.reaped.summary}")


def stage(dataset: Path, staged_root: Path, params: StageParams | None = None,
          stage_dir: Path | None = None) -> StageResult:
    """Make `staged_root` a trusted copy of the dataset under `dataset` (a YOLO directory, or a packed
    dataset's `.shards` directory) and write the data.yaml training reads; with `stage_dir`, the files live
    in that directory and `staged_root` links to them."""
    started = time.perf_counter()
    params = params or StageParams()
    packed = is_packed(dataset)
    source_root = Path(os.path.abspath(dataset)) if packed else load_dataset(dataset).root
    staged_root = Path(os.path.abspath(staged_root))
    target = copy_folder(staged_root, stage_dir)
    if target == source_root or source_root in target.parents or target in source_root.parents:
        raise PipelineError(f"the staging directory {target} overlaps the dataset {source_root}",
                            hint="stage into a directory outside the dataset")
    if packed:
        index = read_index(source_root)
        description = packed_description(source_root)
    else:
        description = dataset_description(load_dataset(dataset))
    point(staged_root, target)
    reaped = reap_abandoned(stage_dir, keep=target) if stage_dir else Reaped()
    key = {"format": FORMAT, "source": str(source_root), **params.model_dump(mode="json")}
    if packed:
        from yolopipe.pack.extract import extract_members  # here: extract itself builds on stage's modules

        result = sync_files(index.members, target, key, params.max_side is not None,
                            partial(extract_members, index, target=target, max_side=params.max_side))
    else:
        result = sync(source_root, target, key, params.link, params.max_side)
    text = "# Written by `yolopipe stage`; Ultralytics reads this copy.\n" + yaml.safe_dump(description,
                                                                                         sort_keys=False)
    data_yaml = target / "data.yaml"
    if not data_yaml.is_file() or data_yaml.read_text() != text:
        data_yaml.write_text(text)
    return StageResult(staged_root, staged_root / "data.yaml", result.files + 1, result.bytes + len(text),
                       result.written, result.linked, target if target != staged_root else None,
                       time.perf_counter() - started, reaped)


def dataset_description(source: Dataset) -> dict:
    """data.yaml's content for a copy of `source`: splits relative to the copy's root, classes by id."""
    splits = {name: [_relative_entry(p, source.root, source.yaml_path) for p in parts]
              for name, parts in source.splits.items()}
    return {**{name: entries[0] if len(entries) == 1 else entries for name, entries in splits.items()},
            "nc": source.nc, "names": dict(enumerate(source.names))}


def packed_description(shards: Path) -> dict:
    """The description `yolopipe pack` stored beside the index (dataset_description of the source)."""
    path = shards / DATA_YAML
    try:
        description = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PipelineError(f"cannot read the packed dataset's description ({exc})", path=path,
                            hint="pack the dataset again with `yolopipe pack`") from None
    if not isinstance(description, dict) or not {"train", "val", "names"} <= description.keys():
        raise PipelineError("the packed dataset's description lacks train, val or names", path=path,
                            hint="pack the dataset again with `yolopipe pack`")
    return description


def _relative_entry(path: Path, root: Path, yaml_path: Path) -> str:
    if path != root and root not in path.parents:
        raise PipelineError(f"split {path} lies outside the dataset root {root}; it would not be staged",
                            path=yaml_path, hint="keep every split under the dataset's `path`")
    return path.relative_to(root).as_posix()
