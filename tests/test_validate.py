"""validate on real tiny datasets: every check has a broken dataset that produces its code at the right
file (and line), quirky-but-valid datasets pass, the report is deterministic, and the data is untouched."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from pydantic import ValidationError

from corpus import BOX, build, image_bytes, tree_digest, write
from yolopipe.findings import CODES
from yolopipe.params import ValidateParams
from yolopipe.synth import synthesize
from yolopipe.validate import failure_message, validate

DEFAULT = ValidateParams()


def located(result) -> set[tuple[str, int | None, str]]:
    return {(f.path, f.line, f.code) for f in result.findings}


def codes(result) -> set[str]:
    return {f.code for f in result.findings}


# --- valid datasets ---------------------------------------------------------------------------------------

def test_synthetic_dataset_passes_and_writes_the_dvc_outputs(tmp_path):
    synthesize(tmp_path / "ds", {"train": 12, "val": 4, "test": 4}, width=64, height=48)
    result = validate(tmp_path / "ds", DEFAULT, out_dir=tmp_path / "out")
    assert result.passed, failure_message(result)
    assert result.summary.startswith("validated 20 images (")
    assert result.summary.endswith("in 3 splits: 0 errors, 0 warnings")
    assert result.report_path == tmp_path / "out" / "report.json"
    # One metric; the counts live in the report, out of `dvc exp show`'s way.
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == {"validate": {"passed": 1}}
    rows = (tmp_path / "out" / "class_histogram.csv").read_text().splitlines()
    assert rows[0] == "split,class,instances" and len(rows) == 1 + 3 * 3
    report = json.loads(result.report_path.read_text())
    assert report["counts"]["images"] == 20 and report["counts"]["errors"] == 0
    assert report["splits"]["train"]["images"] == 12
    assert report["splits"]["train"]["sizes"] == {"64x48": 12}
    train = report["splits"]["train"]
    assert sum(train["instances_per_class"].values()) == train["instances"]


def test_report_is_deterministic_and_has_no_machine_paths(tmp_path):
    root = build(tmp_path / "ds")
    write(root / "labels" / "train" / "a.txt", b"0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")
    validate(root, DEFAULT, out_dir=tmp_path / "one")
    validate(root / "data.yaml", DEFAULT, out_dir=tmp_path / "two", jobs=2)  # the pool path too
    for name in ("report.json", "metrics.json", "class_histogram.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert str(tmp_path) not in (tmp_path / "one" / "report.json").read_text()


def test_quirky_but_valid_datasets_pass(tmp_path):
    root = build(tmp_path / "ds", names={0: "cat", 1: "dog"}, nc=2)
    write(root / "images" / "train" / "gray.png", image_bytes("PNG", mode="L"))
    write(root / "labels" / "train" / "gray.txt", BOX.encode())
    write(root / "images" / "train" / "UPPER.JPG", image_bytes())
    write(root / "labels" / "train" / "UPPER.txt", b"\xef\xbb\xbf1 0.5 0.5 0.2 0.2\r\n\n")  # BOM, CRLF, blank
    write(root / "images" / "train" / "rotated.jpg", image_bytes(size=(40, 20), orientation=6))
    write(root / "labels" / "train" / "rotated.txt", BOX.encode())
    write(root / "labels" / "train" / "c.txt", b"")  # empty label file: a background, like a missing one
    write(root / "val.txt", b"./images/val/d.jpg\n./images/val/e.jpg\n")
    description = yaml.safe_load((root / "data.yaml").read_text())
    write(root / "data.yaml", yaml.safe_dump({**description, "val": "val.txt"}).encode())
    result = validate(root, DEFAULT, out_dir=tmp_path / "out")
    assert result.passed, failure_message(result)
    assert result.findings == []
    assert result.splits["train"]["images"] == 6 and result.splits["train"]["backgrounds"] == 1
    assert result.splits["val"]["images"] == 2
    assert result.splits["train"]["sizes"]["20x40"] == 1  # EXIF orientation 6 swaps width and height


def test_segmentation_dataset_passes(tmp_path):
    polygon = "0 0.1 0.1 0.9 0.1 0.5 0.8\n"
    root = build(tmp_path / "ds", {"train": {"a.jpg": polygon, "b.jpg": "1" + polygon[1:]},
                                   "val": {"c.jpg": polygon}})
    result = validate(root, DEFAULT, out_dir=tmp_path / "out")
    assert result.passed, failure_message(result)
    assert json.loads(result.report_path.read_text())["dataset"]["task"] == "segment"


# --- data.yaml --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "code", "line"), [
    ("train: images/train\nval: [images/val\nnames: [cat]\n", "yaml.invalid", 3),
    ("- just a list\n", "yaml.invalid", None),
    ("train: images/train\nval: images/val\nnames: {1: cat}\n", "yaml.names_invalid", None),
    ("train: images/train\nval: images/val\n", "yaml.names_invalid", None),
    ("train: images/train\nval: images/val\nnames: [cat, dog]\nnc: 3\n", "yaml.nc_mismatch", None),
    ("train: images/train\nnames: [cat, dog]\n", "yaml.split_missing", None),
    ("train: images/train\nval: 5\nnames: [cat, dog]\n", "yaml.split_invalid", None),
    ("train: images/train\nval: images/nowhere\nnames: [cat, dog]\n", "yaml.split_not_found", None),
])
def test_data_yaml_problems_are_findings(tmp_path, text, code, line):
    root = build(tmp_path / "ds")
    write(root / "data.yaml", text.encode())
    result = validate(root, DEFAULT, out_dir=tmp_path / "out")
    assert not result.passed
    assert ("data.yaml", line, code) in located(result)
    assert json.loads(result.report_path.read_text())["passed"] is False


def test_missing_data_yaml_and_path_relative_to_the_yaml(tmp_path):
    assert "yaml.missing" in codes(validate(tmp_path / "nothing-here", DEFAULT))
    root = build(tmp_path / "data" / "ds")
    write(tmp_path / "configs" / "ds.yaml", yaml.safe_dump(
        {"path": "../data/ds", "train": "images/train", "val": "images/val", "names": ["cat", "dog"]}
    ).encode())
    result = validate(tmp_path / "configs" / "ds.yaml", DEFAULT)
    assert result.passed, failure_message(result)
    assert result.counts["images"] == 5 and root.exists()


def test_a_split_without_images(tmp_path):
    root = build(tmp_path / "ds")
    shutil.rmtree(root / "images" / "val")
    (root / "images" / "val").mkdir()
    assert ("data.yaml", None, "split.empty") in located(validate(root, DEFAULT))


# --- images -----------------------------------------------------------------------------------------------

def test_broken_images_are_named(tmp_path):
    root = build(tmp_path / "ds")
    train = root / "images" / "train"
    write(train / "empty.jpg", b"")
    write(train / "cut.jpg", image_bytes()[:-2])
    write(train / "cut.png", image_bytes("PNG")[:-12])
    write(train / "noise.jpg", b"this is not an image at all" * 10)
    write(train / "gif.jpg", image_bytes("GIF", mode="L"))
    write(train / "tiny.png", image_bytes("PNG", size=(8, 30)))
    write(train / "anim.gif", image_bytes("GIF", mode="L"))
    result = validate(root, DEFAULT, out_dir=tmp_path / "out")
    assert not result.passed
    assert {
        ("images/train/empty.jpg", None, "image.empty"),
        ("images/train/cut.jpg", None, "image.truncated"),
        ("images/train/cut.png", None, "image.truncated"),
        ("images/train/noise.jpg", None, "image.corrupt"),
        ("images/train/gif.jpg", None, "image.unsupported_format"),
        ("images/train/tiny.png", None, "image.too_small"),
        ("images/train/anim.gif", None, "image.skipped_file"),
    } <= located(result)


def test_full_decode_finds_what_headers_do_not(tmp_path):
    root = build(tmp_path / "ds")
    data = bytearray(image_bytes("PNG", size=(64, 48), noise=True))
    start = data.index(b"IDAT") + 8
    data[start:start + 30] = bytes(b ^ 0x55 for b in data[start:start + 30])
    write(root / "images" / "train" / "scrambled.png", bytes(data))
    assert validate(root, DEFAULT).passed
    result = validate(root, ValidateParams(full_decode=True))
    assert ("images/train/scrambled.png", None, "image.corrupt") in located(result)


def test_listed_image_that_does_not_exist(tmp_path):
    root = build(tmp_path / "ds")
    write(root / "val.txt", b"./images/val/d.jpg\n./images/val/gone.jpg\n")
    write(root / "data.yaml", yaml.safe_dump({"train": "images/train", "val": "val.txt",
                                              "names": ["cat", "dog"]}).encode())
    assert ("images/val/gone.jpg", None, "image.missing") in located(validate(root, DEFAULT))


def test_duplicates_within_a_split_and_leaks_between_splits(tmp_path):
    root = build(tmp_path / "ds")
    shutil.copy(root / "images" / "train" / "a.jpg", root / "images" / "train" / "a-copy.jpg")
    shutil.copy(root / "images" / "train" / "b.jpg", root / "images" / "val" / "b-again.jpg")
    result = validate(root, DEFAULT)
    assert ("images/train/a.jpg", None, "image.duplicate") in located(result)  # sorts after a-copy.jpg
    assert ("images/val/b-again.jpg", None, "image.split_leak") in located(result)
    leak = next(f for f in result.findings if f.code == "image.split_leak")
    assert leak.message == "same content as images/train/b.jpg in train"


# --- labels -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("rows", "code", "line"), [
    ("0 0.5 0.5 0.2\n", "label.bad_columns", 1),
    ("0 0.5 0.5 0.2 0.2\n0 0.1 0.1 0.9 0.1 0.5 0.8\n", "label.mixed_formats", 2),
    ("0 0.5 abc 0.2 0.2\n", "label.not_numeric", 1),
    ("0 0.5 0.5 0.2 0.2\n0 nan 0.5 0.2 0.2\n", "label.not_finite", 2),
    ("0 0.5 0.5 inf 0.2\n", "label.not_finite", 1),
    ("1.5 0.5 0.5 0.2 0.2\n", "label.class_not_integer", 1),
    ("0 0.5 0.5 0.2 0.2\n\n7 0.5 0.5 0.2 0.2\n", "label.class_out_of_range", 3),
    ("-1 0.5 0.5 0.2 0.2\n", "label.class_out_of_range", 1),
    ("0 1.2 0.5 0.2 0.2\n", "label.coord_out_of_range", 1),
    ("0 0.5 0.5 0.0 0.2\n", "label.degenerate_box", 1),
    ("0 0.5 0.5 0.2 -0.005\n", "label.degenerate_box", 1),
    ("0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n0 0.50 0.5 0.2 0.2\n", "label.duplicate_row", 3),
])
def test_label_problems_name_file_and_line(tmp_path, rows, code, line):
    root = build(tmp_path / "ds")
    write(root / "labels" / "train" / "a.txt", rows.encode())
    result = validate(root, DEFAULT)
    assert ("labels/train/a.txt", line, code) in located(result)
    assert result.passed == (CODES[code][0] != "error")


def test_label_file_problems(tmp_path):
    root = build(tmp_path / "ds")
    write(root / "labels" / "train" / "b.txt", b"\xff\xfe0 0.5\n")
    write(root / "labels" / "train" / "ghost.txt", BOX.encode())
    polygon = b"0 0.1 0.1 0.9 0.1 0.5 0.8\n"
    write(root / "labels" / "val" / "d.txt", b"\n" + polygon)  # boxes everywhere else
    result = validate(root, DEFAULT)
    assert {("labels/train/b.txt", None, "label.unreadable"),
            ("labels/train/ghost.txt", None, "label.orphan"),
            ("labels/val/d.txt", 2, "label.inconsistent_format")} <= located(result)
    assert str(next(f for f in result.findings if f.code == "label.orphan")) == (
        "labels/train/ghost.txt: label.orphan: no image of any split uses this label file")


def test_class_without_train_instances_is_a_warning(tmp_path):
    root = build(tmp_path / "ds", {"train": {"a.jpg": BOX}, "val": {"b.jpg": "1 0.5 0.5 0.2 0.2\n"}})
    result = validate(root, DEFAULT)
    assert result.passed and ("data.yaml", None, "class.no_train_instances") in located(result)
    assert result.findings[0].message == "class 1 (dog) has no instances in train"
    assert result.summary.endswith(": 0 errors, 1 warning")


# --- policy and output ------------------------------------------------------------------------------------

def test_policy_decides_what_fails(tmp_path):
    train = {f"{i}.jpg": BOX for i in range(9)} | {"x.jpg": "5 .5 .5 .2 .2\n"}
    root = build(tmp_path / "ds", {"train": train, "val": {"v.jpg": "0 0.5 0.5 0.2 0.2\n0 .5 .5 .2 .2\n"}})
    assert not validate(root, DEFAULT).passed
    assert validate(root, ValidateParams(fail_on=["image.corrupt"])).passed
    tolerated = validate(root, ValidateParams(max_bad_fraction=0.1))  # 1 bad image in 11
    assert tolerated.passed and [f.code for f in tolerated.failing] == ["label.class_out_of_range"]
    write(root / "images" / "train" / "x.jpg", image_bytes()[:-2])  # the same image again: still 1 in 11
    assert validate(root, ValidateParams(max_bad_fraction=0.1)).counts["bad_fraction"] == round(1 / 11, 6)
    strict = validate(root, ValidateParams(fail_on=["label.duplicate_row"]))
    assert not strict.passed and [f.code for f in strict.failing] == ["label.duplicate_row"]
    with pytest.raises(ValidationError, match="unknown severity or finding code 'label.class_out_of_rnage'"):
        ValidateParams(fail_on=["label.class_out_of_rnage"])


def test_failure_message_names_first_findings_and_report(tmp_path):
    root = build(tmp_path / "ds")
    rows = "".join(f"{c} 0.5 0.5 0.2 0.2\n" for c in range(3, 10))
    write(root / "labels" / "train" / "a.txt", rows.encode())
    result = validate(root, DEFAULT, out_dir=tmp_path / "out")
    message = failure_message(result, limit=2)
    assert message.splitlines()[0] == f"validate failed: {result.summary}"
    assert "  labels/train/a.txt:1: label.class_out_of_range: class id 3 is not in [0, 2)" in message
    assert "... and 5 more" in message and str(tmp_path / "out" / "report.json") in message


def test_the_dataset_is_never_written(tmp_path):
    root = build(tmp_path / "ds")
    write(root / "images" / "train" / "cut.jpg", image_bytes()[:-2])  # Ultralytics would rewrite this one
    write(root / "labels" / "train" / "a.txt", b"0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n")
    before = tree_digest(root)
    validate(root, ValidateParams(full_decode=True), out_dir=tmp_path / "out", jobs=2)
    assert tree_digest(root) == before


def test_reuses_md5s_dvc_recorded_and_rehashes_changed_files(tmp_path):
    root = build(tmp_path / "repo" / "data" / "ds")
    shutil.copy(root / "images" / "train" / "a.jpg", root / "images" / "val" / "a-leaked.jpg")
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=tmp_path / "repo", check=True)
    subprocess.run([*dvc, "add", "-q", "data/ds"], cwd=tmp_path / "repo", check=True)
    result = validate(root, DEFAULT)
    assert result.hashes_from_dvc == 6
    assert ("images/val/a-leaked.jpg", None, "image.split_leak") in located(result)
    write(root / "images" / "val" / "d.jpg", image_bytes())  # changed since `dvc add`: DVC's md5 is stale
    write(root / "images" / "val" / "e.jpg", (root / "images" / "train" / "b.jpg").read_bytes())
    result = validate(root, DEFAULT)
    assert result.hashes_from_dvc == 4
    assert ("images/val/e.jpg", None, "image.split_leak") in located(result)
