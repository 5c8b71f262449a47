"""The YOLO dataset model: data.yaml, its splits, and the image <-> label pairing Ultralytics uses.

Paths are resolved exactly as Ultralytics resolves them (`path` relative to the yaml's directory, splits
relative to `path`; a split is a directory, a list of directories, or a .txt file of image paths), so
what we validate and stage is what training reads.

`read_dataset` collects every data.yaml problem (validate reports them all); `load_dataset` raises the
first one as a PipelineError (the other stages cannot work around any of them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from yolopipe.errors import PipelineError

# Ultralytics' IMG_FORMATS (ultralytics/data/utils.py, 8.4).
IMAGE_SUFFIXES = frozenset({".avif", ".bmp", ".dng", ".heic", ".heif", ".jp2", ".jpeg", ".jpg", ".mpo",
                            ".png", ".tif", ".tiff", ".webp"})
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Dataset:
    yaml_path: Path
    root: Path
    names: tuple[str, ...]
    splits: dict[str, tuple[Path, ...]]
    """Split name -> the directories or .txt lists it is made of (absolute)."""

    @property
    def nc(self) -> int:
        return len(self.names)

    def images(self, split: str) -> Iterator[Path]:
        """Every image file of a split, in a stable order."""
        for source in self.splits[split]:
            yield from split_files(source)[0]


@dataclass(frozen=True)
class Problem:
    """A data.yaml problem: a finding code (see findings.py), what is wrong, and where in the yaml."""

    code: str
    message: str
    line: int | None = None
    hint: str | None = None


@dataclass(frozen=True)
class DatasetReading:
    yaml_path: Path
    dataset: Dataset | None
    """None when data.yaml cannot be read far enough to know the classes."""
    problems: list[Problem] = field(default_factory=list)


def read_dataset(path: str | Path) -> DatasetReading:
    """Read a dataset from its data.yaml (or a directory holding one), collecting every problem."""
    path = Path(path)
    yaml_path = (path / "data.yaml" if path.is_dir() else path).absolute()
    if not yaml_path.is_file():
        return DatasetReading(yaml_path, None, [Problem(
            "yaml.missing", "no data.yaml found", hint="point at a YOLO dataset directory or its data.yaml")])
    try:
        description = yaml.safe_load(yaml_path.read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        return DatasetReading(yaml_path, None, [Problem(
            "yaml.invalid", f"not valid YAML: {getattr(exc, 'problem', None) or exc}",
            line=mark.line + 1 if mark else None)])
    if not isinstance(description, dict):
        return DatasetReading(yaml_path, None, [Problem(
            "yaml.invalid", "expected a mapping with train, val and names")])
    problems: list[Problem] = []
    names = _names(description, problems)
    if names is None:
        return DatasetReading(yaml_path, None, problems)
    root = yaml_path.parent.resolve()
    if description.get("path"):
        root = (root / str(description["path"])).resolve()
    if "val" not in description and "validation" in description:  # Ultralytics renames it too
        description["val"] = description["validation"]
    splits = {}
    for split in SPLITS:
        sources = _split_sources(split, description.get(split), root, problems)
        if sources:
            splits[split] = sources
    return DatasetReading(yaml_path, Dataset(yaml_path, root, names, splits), problems)


def load_dataset(path: str | Path) -> Dataset:
    """Read a dataset from its data.yaml, or from a directory holding one; raise on the first problem."""
    reading = read_dataset(path)
    if reading.problems or reading.dataset is None:
        first = reading.problems[0]
        raise PipelineError(first.message, path=reading.yaml_path, line=first.line,
                            hint=first.hint or "run `yolopipe validate` to see every problem")
    return reading.dataset


def held_out_split(dataset: Dataset, wanted: str) -> str:
    """The split to score a model on: `wanted` (evaluate.split) when the dataset has it, else val."""
    return wanted if wanted in dataset.splits else "val"


def label_path(image: Path) -> Path:
    """The label file Ultralytics reads for an image: the last /images/ becomes /labels/, suffix .txt."""
    return Path(label_file(str(image)))


def label_file(image: str) -> str:
    """label_path on strings, for the hot loop of validate."""
    if _IMAGES_DIR in image:
        image = _LABELS_DIR.join(image.rsplit(_IMAGES_DIR, 1))
    return image.rsplit(".", 1)[0] + ".txt"


_IMAGES_DIR, _LABELS_DIR = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"


def split_files(source: Path) -> tuple[list[Path], list[Path]]:
    """The images a split source names, sorted, and the files of a source directory Ultralytics skips."""
    images, skipped = split_file_names(source)
    return [Path(p) for p in images], [Path(p) for p in skipped]


def split_file_names(source: Path) -> tuple[list[str], list[str]]:
    """split_files as sorted absolute path strings (pathlib is too slow for a million files)."""
    if source.is_file():
        return [str(p) for p in _listed_images(source)], []
    images, skipped = [], []
    for parent, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # glob('**/*.*') skips hidden entries
        for name in files:
            if name.startswith(".") or "." not in name:
                continue
            suffix = name[name.rindex("."):].lower()
            if suffix in IMAGE_SUFFIXES:
                images.append(os.path.join(parent, name))
            elif suffix not in _NOT_IMAGES:
                skipped.append(os.path.join(parent, name))
    return sorted(images), sorted(skipped)


# Files that legitimately sit beside images (labels, caches, notes) and are not worth a warning.
_NOT_IMAGES = frozenset({".txt", ".cache", ".npy", ".json", ".yaml", ".yml", ".md", ".csv", ".dvc", ".xml"})


def _names(description: dict, problems: list[Problem]) -> tuple[str, ...] | None:
    names = description.get("names")
    if isinstance(names, dict):
        if set(names) != set(range(len(names))):
            problems.append(Problem("yaml.names_invalid", "names as a mapping must use the ids 0..n-1"))
            return None
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        problems.append(Problem("yaml.names_invalid",
                                "'names' must be a non-empty list or a mapping of id -> name"))
        return None
    nc = description.get("nc")
    if nc is not None and nc != len(names):
        problems.append(Problem("yaml.nc_mismatch", f"nc is {nc!r} but {len(names)} names are given",
                                hint="remove nc (Ultralytics counts the names) or make it match"))
    return tuple(str(n) for n in names)


def _split_sources(split: str, entry: object, root: Path, problems: list[Problem]) -> tuple[Path, ...]:
    if entry in (None, "", []):
        if split != "test":
            problems.append(Problem("yaml.split_missing", f"the '{split}' split is missing",
                                    hint="Ultralytics needs both train and val"))
        return ()
    entries = entry if isinstance(entry, list) else [entry]
    if not all(isinstance(e, str) for e in entries):
        problems.append(Problem("yaml.split_invalid", f"'{split}' must be a path or a list of paths"))
        return ()
    sources = []
    for text in entries:
        source = (root / text).resolve()
        if not source.exists() and text.startswith("../"):  # Ultralytics' fallback for a single path
            source = (root / text[3:]).resolve()
        if source.exists():
            sources.append(source)
        else:
            problems.append(Problem("yaml.split_not_found",
                                    f"the '{split}' split points at {text}, which is not under {root}"))
    return tuple(sources)


def _listed_images(listing: Path) -> Iterator[Path]:
    # Ultralytics resolves "./x.jpg" against the list's directory and any other relative entry against the
    # working directory; we do the same so that a list which only works from one directory is caught.
    parent = listing.parent.resolve()
    entries = listing.read_text(encoding="utf-8-sig").strip().splitlines()
    images = []
    for line in (entry.strip() for entry in entries):
        if line and f".{line.rpartition('.')[-1].lower()}" in IMAGE_SUFFIXES:
            image = parent / line[2:] if line.startswith("./") else Path(line).absolute()
            images.append(Path(os.path.normpath(image)))  # one spelling per file, whatever the list says
    return iter(sorted(images))
