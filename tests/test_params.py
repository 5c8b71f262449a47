from pathlib import Path

import pytest

from yolopipe.errors import PipelineError
from yolopipe.params import Params, load_params

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_repository_params_are_valid_and_explicit():
    params = load_params(REPO_PARAMS)
    assert params.data.root == Path("data/sample")
    # Every key the schema knows is spelt out in params.yaml, so `dvc params diff` shows it.
    import yaml

    raw = yaml.safe_load(REPO_PARAMS.read_text())
    for section, model in Params.model_fields.items():
        name = model.alias or section
        assert set(raw[name]) == set(model.annotation.model_fields), name


@pytest.mark.parametrize(("text", "expected"), [
    ("train: {epochs: -1}", "train.epochs: Input should be greater than or equal to 1 (got -1)"),
    ("train: {epoch: 3}", "train.epoch: unknown key; did you mean 'epochs'?"),
    ("trian: {epochs: 3}", "trian: unknown key; did you mean 'train'?"),
    ("train: {imgsz: 100}", "train.imgsz: must be a multiple of 32"),
    ("train: {batch: 0}", "train.batch: must be a positive number of images, or -1"),
    ("export: {formats: [tflite]}", "export.formats.0: Input should be 'onnx'"),
    ("validate: {max_bad_fraction: 2}", "validate.max_bad_fraction: Input should be less than or equal to 1"),
])
def test_bad_values_name_the_key(tmp_path, text, expected):
    with pytest.raises(PipelineError) as error:
        load_params(write(tmp_path, text))
    assert expected in str(error.value)
    assert str(tmp_path / "params.yaml") in str(error.value)


def test_missing_sections_take_defaults(tmp_path):
    params = load_params(write(tmp_path, "train: {epochs: 3}"))
    assert params.train.epochs == 3
    assert params.train.imgsz == 160
    assert params.export.formats == ["onnx"]


def test_broken_yaml_names_the_line(tmp_path):
    with pytest.raises(PipelineError) as error:
        load_params(write(tmp_path, "train:\n  epochs: [3\n"))
    assert error.value.line is not None


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(PipelineError, match="--params"):
        load_params(tmp_path / "nope.yaml")
