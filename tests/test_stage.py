import shutil

import pytest
import yaml

from yolopipe.dataset import load_dataset
from yolopipe.errors import PipelineError
from yolopipe.stage import stage

from conftest import tree_digest


def test_staged_copy_is_complete_and_self_contained(tiny_dataset, tmp_path):
    before = tree_digest(tiny_dataset)
    result = stage(tiny_dataset, tmp_path / "staged")
    assert tree_digest(tiny_dataset) == before  # the source is never written
    staged = tree_digest(tmp_path / "staged")
    assert {k: v for k, v in staged.items() if k != "data.yaml"} == \
        {k: v for k, v in before.items() if k != "data.yaml"}
    description = yaml.safe_load(result.data_yaml.read_text())
    # No `path:` key: Ultralytics then resolves splits against the yaml's own directory, wherever it lives.
    assert "path" not in description
    copy = load_dataset(result.data_yaml)
    assert copy.names == load_dataset(tiny_dataset).names
    assert [p.name for p in copy.images("train")] == [p.name for p in load_dataset(tiny_dataset).images("train")]


def test_restaging_gives_identical_bytes(tiny_dataset, tmp_path):
    stage(tiny_dataset, tmp_path / "one")
    stage(tiny_dataset, tmp_path / "two")
    assert tree_digest(tmp_path / "one") == tree_digest(tmp_path / "two")


def test_label_caches_and_dvc_files_are_not_copied(tiny_dataset, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(tiny_dataset, source)
    (source / "labels" / "train.cache").write_bytes(b"stale")
    (source / ".gitignore").write_text("x\n")
    stage(source, tmp_path / "staged")
    assert not (tmp_path / "staged" / "labels" / "train.cache").exists()
    assert not (tmp_path / "staged" / ".gitignore").exists()


def test_refuses_to_stage_into_the_dataset(tiny_dataset, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(tiny_dataset, source)
    before = tree_digest(source)
    with pytest.raises(PipelineError, match="overlaps"):
        stage(source, source / "staged")
    with pytest.raises(PipelineError, match="overlaps"):
        stage(source, source)
    assert tree_digest(source) == before


def test_interrupted_copy_is_replaced(tiny_dataset, tmp_path):
    partial = tmp_path / "staged.partial"
    partial.mkdir()
    (partial / "half-written.jpg").write_bytes(b"\xff\xd8")
    stage(tiny_dataset, tmp_path / "staged")
    assert not partial.exists()
    assert not (tmp_path / "staged" / "half-written.jpg").exists()
