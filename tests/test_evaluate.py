import json
import shutil

import pytest
import yaml

from yolopipe.dataset import held_out_split, load_dataset
from yolopipe.evaluate import evaluate
from yolopipe.params import EvaluateParams

CLASSES = {"circle", "square", "triangle"}


@pytest.fixture(scope="module")
def evaluation(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    return evaluate(EvaluateParams(), trained.result.best, trained.data_yaml, out, trained.scratch), out


def test_detection_metrics_are_flat_so_dvc_can_diff(evaluation):
    result, out = evaluation
    assert result.split == "test"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == result.metrics
    expected = {"mAP50", "mAP50-95", "mAP75", "precision", "recall"}
    expected |= {f"AP50/{c}" for c in CLASSES} | {f"AP50-95/{c}" for c in CLASSES}
    assert set(metrics) == expected
    assert all(isinstance(v, float) for v in metrics.values())  # flat: no nested tables
    assert all(0.0 <= metrics[k] <= 1.0 for k in expected)
    assert metrics["mAP50"] >= metrics["mAP75"] >= 0.0
    # Timings live apart from the hashed metrics: they change from run to run, the rest must not.
    speed = json.loads((out / "speed.json").read_text())
    assert speed == result.speed
    assert set(speed) == {"speed/preprocess_ms", "speed/inference_ms", "speed/postprocess_ms"}
    assert speed["speed/inference_ms"] > 0.0


def test_per_class_curves_and_confusion_rows(evaluation, trained):
    _, out = evaluation
    plots = out / "plots"
    for name, x, y in (("pr_curves.json", "recall", "precision"), ("f1_curves.json", "confidence", "f1")):
        rows = json.loads((plots / name).read_text())
        assert {tuple(sorted(row)) for row in rows} == {tuple(sorted(("class", x, y)))}
        by_class = {row["class"] for row in rows}
        assert "all" in by_class and by_class - {"all"} <= CLASSES
        assert all(0.0 <= row[x] <= 1.0 and 0.0 <= row[y] <= 1.0 for row in rows)
        assert len(rows) == 101 * len(by_class)
    confusion = json.loads((plots / "confusion.json").read_text())
    labels = CLASSES | {"background"}
    assert confusion and all(row["actual"] in labels and row["predicted"] in labels for row in confusion)
    # Every true box of the test split is counted once: as a class, or as missed (predicted background).
    test_boxes = sum(len(p.read_text().splitlines())
                     for p in (trained.data_yaml.parent / "labels" / "test").glob("*.txt"))
    assert sum(row["actual"] != "background" for row in confusion) == test_boxes


def test_png_plots_and_images_with_boxes(evaluation, trained):
    _, out = evaluation
    plots = out / "plots"
    for image in ("pr_curve.png", "f1_curve.png", "confusion_matrix.png"):
        assert (plots / image).read_bytes().startswith(b"\x89PNG")
    drawn = sorted(p.name for p in (plots / "images").iterdir())
    first = sorted((trained.data_yaml.parent / "images" / "test").glob("*.jpg"))[:4]
    assert drawn == [f"{p.stem}.png" for p in first]
    from PIL import Image

    with Image.open(plots / "images" / drawn[0]) as picture:
        assert min(picture.size) >= 320  # the 96 px test images are enlarged to stay legible
        assert (0, 170, 0) in {colour for _, colour in picture.getcolors(1 << 20)}  # a true box is drawn


def test_falls_back_to_val_without_a_test_split(trained, tmp_path):
    staged = tmp_path / "staged"
    shutil.copytree(trained.data_yaml.parent, staged)
    description = yaml.safe_load((staged / "data.yaml").read_text())
    del description["test"]
    (staged / "data.yaml").write_text(yaml.safe_dump(description))
    assert held_out_split(load_dataset(staged / "data.yaml"), "test") == "val"
    result = evaluate(EvaluateParams(images=1), trained.result.best, staged / "data.yaml", tmp_path / "eval",
                      trained.scratch)
    assert result.split == "val"
    first_val = sorted((staged / "images" / "val").glob("*.jpg"))[0]
    assert [p.name for p in (tmp_path / "eval" / "plots" / "images").iterdir()] == [f"{first_val.stem}.png"]
