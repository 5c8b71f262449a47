import pytest
import yaml
from PIL import Image

from yolopipe.errors import PipelineError
from yolopipe.synth import CLASS_NAMES, synthesize

from conftest import tree_digest


def test_same_seed_same_bytes(tmp_path):
    counts = {"train": 6, "val": 2, "test": 2}
    synthesize(tmp_path / "a", counts, 64, 48, seed=3)
    synthesize(tmp_path / "b", counts, 64, 48, seed=3)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


def test_scaling_up_keeps_the_first_images(tmp_path):
    synthesize(tmp_path / "small", {"train": 3, "val": 1}, 64, 64)
    synthesize(tmp_path / "large", {"train": 9, "val": 1}, 64, 64)
    small, large = tree_digest(tmp_path / "small"), tree_digest(tmp_path / "large")
    assert small.items() <= large.items() | {("data.yaml", small["data.yaml"])}


def test_layout_labels_and_sizes(tmp_path):
    result = synthesize(tmp_path / "d", {"train": 10, "val": 3, "test": 3}, 120, 80, seed=0)
    description = yaml.safe_load((tmp_path / "d" / "data.yaml").read_text())
    assert description["names"] == dict(enumerate(CLASS_NAMES))
    assert description["test"] == "images/test"
    rows = 0
    for label in (tmp_path / "d" / "labels").rglob("*.txt"):
        image = tmp_path / "d" / "images" / label.parent.name / f"{label.stem}.jpg"
        assert Image.open(image).size == (120, 80)
        for line in label.read_text().splitlines():
            class_id, *box = line.split()
            assert int(class_id) in range(len(CLASS_NAMES))
            assert all(0.0 <= float(v) <= 1.0 for v in box)
            rows += 1
    assert rows == result.instances > 0


def test_refuses_to_write_into_existing_data(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("precious")
    with pytest.raises(PipelineError, match="non-empty"):
        synthesize(tmp_path / "d", {"train": 1, "val": 1})
    assert (tmp_path / "d" / "keep.txt").read_text() == "precious"
