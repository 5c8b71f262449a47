"""The dataset model resolves data.yaml, splits, lists and label paths the way Ultralytics does."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from corpus import build, write
from yolopipe.dataset import label_path, load_dataset, read_dataset
from yolopipe.errors import PipelineError


def test_load_dataset_resolves_splits_and_names(tmp_path):
    root = build(tmp_path / "ds", names={0: "cat", 1: "dog"})
    dataset = load_dataset(root)
    assert dataset.names == ("cat", "dog") and dataset.nc == 2 and dataset.root == root.resolve()
    assert [p.name for p in dataset.images("train")] == ["a.jpg", "b.jpg", "c.jpg"]


def test_load_dataset_raises_the_first_problem_with_its_line(tmp_path):
    write(tmp_path / "data.yaml", b"train: images/train\nval: [oops\n")
    with pytest.raises(PipelineError) as error:
        load_dataset(tmp_path)
    assert error.value.path == (tmp_path / "data.yaml").absolute() and error.value.line == 3


def test_read_dataset_collects_every_problem(tmp_path):
    write(tmp_path / "data.yaml", yaml.safe_dump({"train": "nowhere", "names": ["a"], "nc": 2}).encode())
    reading = read_dataset(tmp_path)
    assert [p.code for p in reading.problems] == ["yaml.nc_mismatch", "yaml.split_not_found",
                                                   "yaml.split_missing"]
    assert reading.dataset is not None and reading.dataset.names == ("a",)


def test_list_entries_resolve_like_ultralytics(tmp_path, monkeypatch):
    root = build(tmp_path / "ds")
    write(root / "lists" / "train.txt", b"./../images/train/a.jpg\nimages/train/b.jpg\nnotes.md\n")
    write(root / "data.yaml", yaml.safe_dump({"train": "lists/train.txt", "val": "images/val",
                                              "names": ["cat", "dog"]}).encode())
    monkeypatch.chdir(tmp_path)  # entries without ./ are relative to the working directory
    images = list(load_dataset(root).images("train"))
    assert images == sorted([root / "images/train/a.jpg", tmp_path / "images/train/b.jpg"])


def test_label_path_replaces_the_last_images_directory():
    assert label_path(Path("/d/images/x/images/train/a.b.JPG")) == Path("/d/images/x/labels/train/a.b.txt")
    assert label_path(Path("/d/train/a.png")) == Path("/d/train/a.txt")
