import json
import shutil
from pathlib import Path

import onnx
import pytest
import torch
from onnx import numpy_helper

from yolopipe.errors import PipelineError
from yolopipe.export import check_available, export
from yolopipe.export.parity import compare_export
from yolopipe.params import ExportParams


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    evaluation = out / "evaluate.json"
    evaluation.write_text(json.dumps({"mAP50": 0.5, "AP50/circle": 0.6, "speed/inference_ms": 3.0}))
    result = export(ExportParams(formats=["onnx", "torchscript"]), trained.result.best, trained.data_yaml,
                    trained.models_dir, out, trained.scratch, evaluation=evaluation)
    return result, out


def test_every_format_matches_pytorch(exported, trained):
    result, out = exported
    assert result.exported == {"onnx": trained.models_dir / "best.onnx",
                               "torchscript": trained.models_dir / "best.torchscript"}
    onnx.checker.check_model(str(result.exported["onnx"]))
    metrics = json.loads((out / "metrics.json").read_text())
    assert all(isinstance(v, (int, float)) for v in metrics.values())  # flat keys for dvc metrics diff
    for fmt in ("onnx", "torchscript"):
        assert metrics[f"{fmt}/images"] == 8  # the whole test split of the tiny dataset
        assert metrics[f"{fmt}/mismatched_images"] == 0
        assert 0.0 <= metrics[f"{fmt}/max_abs_diff"] < 1e-4
    assert 0.0 < metrics["onnx/max_abs_diff"]  # float differences exist, and are small


def test_latency_per_format(exported):
    _, out = exported
    speed = json.loads((out / "speed.json").read_text())
    assert set(speed) == {"pytorch/latency_ms", "onnx/latency_ms", "torchscript/latency_ms"}
    assert all(value > 0.0 for value in speed.values())
    assert not any(key.endswith("latency_ms") for key in json.loads((out / "metrics.json").read_text()))


def test_model_card_describes_the_weights(exported, trained):
    result, _ = exported
    card = json.loads(result.card.read_text())
    assert result.card == trained.models_dir / "model_card.json"
    assert card["classes"] == {"0": "circle", "1": "square", "2": "triangle"}
    assert card["model"]["imgsz"] == 64 and len(card["model"]["md5"]) == 32
    assert card["input"]["shape"] == [1, 3, 64, 64]
    assert card["output"]["shape"] == [1, 4 + 3, 84]  # (64/8)^2 + (64/16)^2 + (64/32)^2 candidates
    assert set(card["exports"]) == {"onnx", "torchscript"}
    assert card["exports"]["onnx"]["output_shape"] == card["output"]["shape"]
    assert len(card["dataset"]["md5"]) == 32 and card["dataset"]["held_out_split"] == "test"
    assert card["metrics"] == {"mAP50": 0.5, "AP50/circle": 0.6}  # timings vary, so they stay out


def test_rerun_writes_identical_bytes(exported, trained, tmp_path):
    result, out = exported
    onnx_before, card_before = result.exported["onnx"].read_bytes(), json.loads(result.card.read_text())
    export(ExportParams(formats=["onnx", "torchscript"]), trained.result.best, trained.data_yaml,
           trained.models_dir, tmp_path, trained.scratch, evaluation=out / "evaluate.json")
    assert result.exported["onnx"].read_bytes() == onnx_before
    # A second trace in the same process renames TorchScript's classes, so its bytes only repeat in a fresh
    # process (as in `dvc repro`); here, check that the export date, the part that varied, is gone.
    extra = {"config.txt": ""}
    torch.jit.load(str(result.exported["torchscript"]), _extra_files=extra)
    assert "date" not in json.loads(extra["config.txt"])
    card = json.loads(result.card.read_text())
    for fmt_card in (card, card_before):
        del fmt_card["exports"]["torchscript"]["md5"]
    assert card == card_before


def test_corrupted_onnx_weights_are_rejected(exported, trained, tmp_path):
    result, _ = exported
    model = onnx.load(str(result.exported["onnx"]))
    # Edit the weights of the box decoder (the DFL convolution, a 1x16x1x1 kernel): every box moves,
    # even for a barely trained model whose other layers hardly depend on the input.
    initializers = {t.name: t for t in model.graph.initializer}
    kernel = next(initializers[n.input[1]] for n in model.graph.node
                  if n.op_type == "Conv" and list(initializers[n.input[1]].dims) == [1, 16, 1, 1])
    kernel.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(kernel) * 2.0, kernel.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    images = sorted((trained.data_yaml.parent / "images" / "test").glob("*.jpg"))
    parity = compare_export(trained.result.best, broken, images, 64)
    assert parity["max_abs_diff"] > 1e-2


def test_export_fails_loudly_above_the_tolerance(trained, tmp_path):
    strict = ExportParams(max_abs_diff=1e-12)
    with pytest.raises(PipelineError, match="disagrees with PyTorch"):
        export(strict, trained.result.best, trained.data_yaml, tmp_path, tmp_path / "out", trained.scratch)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_formats_this_machine_cannot_build_fail_with_what_to_install():
    with pytest.raises(PipelineError, match="(?s)engine .*no NVIDIA GPU.*pip install tensorrt"):
        check_available(["onnx", "engine"], half=False)
    with pytest.raises(PipelineError, match="torchscript needs a GPU"):
        check_available(["torchscript"], half=True)
    check_available(["onnx"], half=True)  # FP16 ONNX is converted on the CPU


def test_openvino_without_its_package_names_the_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(PipelineError, match="pip install openvino"):
        check_available(["openvino"], half=False)


def test_params_reject_unknown_formats_and_bad_sizes():
    with pytest.raises(ValueError):
        ExportParams(formats=["tflite"])
    with pytest.raises(ValueError):
        ExportParams(imgsz=100)
    with pytest.raises(ValueError):
        ExportParams(formats=["onnx", "onnx"])


def test_card_dataset_hash_is_what_dvc_sees(tiny_dataset, tmp_path, monkeypatch):
    """The card's dataset md5 ignores stage's marker (this machine's mtimes) and Ultralytics' caches,
    and is the md5 dvc.lock records for the staged copy when there is one."""
    from yolopipe.dvchashes import dataset_md5

    staged = tmp_path / "data" / "staged"
    shutil.copytree(tiny_dataset, staged)
    before = dataset_md5(staged)
    (staged / ".yolopipe-stage.json").write_text('{"mtimes": "of this machine"}')
    (staged / "labels" / "train.cache").write_bytes(b"cache")
    assert dataset_md5(staged) == before
    (tmp_path / "dvc.lock").write_text("stages:\n  stage:\n    outs:\n    - path: data/staged\n"
                                       "      md5: 89ab.dir\n")
    monkeypatch.chdir(tmp_path)
    assert dataset_md5(Path("data/staged")) == "89ab.dir"


def test_export_checks_and_describes_the_split_evaluate_scored(trained, tmp_path):
    """With evaluate.split: val, the parity images and the card's split are val's, the split the card's
    metrics come from (export once hard-coded test)."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(trained.result.best, models / "best.pt")  # the export lands beside its weights
    result = export(ExportParams(formats=["onnx"]), models / "best.pt", trained.data_yaml, models, tmp_path / "out",
                    trained.scratch, held_out="val")
    assert json.loads(result.card.read_text())["dataset"]["held_out_split"] == "val"
