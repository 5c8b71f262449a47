import sys

from conftest import run

YOLOPIPE = [sys.executable, "-m", "yolopipe.cli"]


def test_bad_params_fail_before_any_work(tmp_path, tiny_dataset):
    (tmp_path / "params.yaml").write_text(f"data: {{root: {tiny_dataset}}}\ntrain: {{epochs: -1}}\n")
    for stage in ("validate", "stage", "train", "evaluate", "export"):
        result = run([*YOLOPIPE, stage], cwd=tmp_path, check=False)
        assert result.returncode == 1, stage
        assert "train.epochs: Input should be greater than or equal to 1 (got -1)" in result.stderr
        assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing was written


def test_unknown_key_is_named(tmp_path):
    (tmp_path / "params.yaml").write_text("train: {epoch: 3}\n")
    result = run([*YOLOPIPE, "train"], cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert "train.epoch: unknown key; did you mean 'epochs'?" in result.stderr


def test_missing_weights_are_a_readable_error(tmp_path, tiny_dataset):
    (tmp_path / "params.yaml").write_text("train: {model: models/pretrained/yolo11n.pt}\n")
    result = run([*YOLOPIPE, "train"], cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert "models/pretrained/yolo11n.pt not found; yolopipe never downloads weights" in result.stderr
    assert "dvc add models/pretrained/yolo11n.pt" in result.stderr
    assert "Traceback" not in result.stderr


def test_synth_then_validate_outside_a_project(tmp_path):
    run([*YOLOPIPE, "synth", "data", "--train", "4", "--val", "2", "--test", "0"], cwd=tmp_path)
    result = run([*YOLOPIPE, "validate", "data"], cwd=tmp_path)
    assert "validated 6 images" in result.stdout


def test_validate_failure_is_one_readable_summary(tmp_path):
    run([*YOLOPIPE, "synth", "data", "--train", "4", "--val", "2", "--test", "0"], cwd=tmp_path)
    label = tmp_path / "data" / "labels" / "train" / "train_000001.txt"
    label.write_text(label.read_text() + "7 0.5 0.5 0.1 0.1\n")
    rows = len(label.read_text().splitlines())
    result = run([*YOLOPIPE, "validate", "data", "--out", "report"], cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert f"labels/train/train_000001.txt:{rows}: label.class_out_of_range" in result.stderr
    assert "report" in result.stderr and (tmp_path / "report" / "report.json").is_file()
    assert "Traceback" not in result.stderr
