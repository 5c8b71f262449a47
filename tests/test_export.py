import json

import onnx
import pytest
from onnx import numpy_helper

from yolopipe.errors import PipelineError
from yolopipe.export import compare_onnx, export
from yolopipe.params import ExportParams


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    result = export(ExportParams(), trained.result.best, trained.data_yaml, trained.models_dir, out,
                    trained.scratch)
    return result, out


def test_onnx_matches_pytorch_in_onnx_runtime(exported, trained):
    result, out = exported
    onnx_path = result.exported["onnx"]
    assert onnx_path == trained.models_dir / "best.onnx"
    onnx.checker.check_model(str(onnx_path))
    parity = json.loads((out / "metrics.json").read_text())["onnx"]
    assert parity["images"] == 8  # the whole test split of the tiny dataset
    assert parity["mismatched_images"] == 0
    assert 0.0 < parity["max_abs_diff"] < 1e-4  # float differences exist, and are small


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
    parity = compare_onnx(trained.result.best, broken, images)
    assert parity["max_abs_diff"] > 1e-2


def test_export_fails_loudly_above_the_tolerance(trained, tmp_path):
    strict = ExportParams(max_abs_diff=1e-12)
    with pytest.raises(PipelineError, match="disagrees with PyTorch"):
        export(strict, trained.result.best, trained.data_yaml, tmp_path, tmp_path / "out", trained.scratch)
