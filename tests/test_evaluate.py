import json
import shutil

import yaml

from yolopipe.evaluate import evaluate, held_out_split
from yolopipe.params import EvaluateParams


def test_metrics_and_plots_dvc_can_read(trained, tmp_path):
    result = evaluate(EvaluateParams(), trained.result.best, trained.data_yaml, tmp_path / "eval", trained.scratch)
    assert result.split == "test"
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert {"mAP50", "mAP50-95", "precision", "recall"} <= set(metrics)
    assert set(metrics["per_class"]) == {"circle", "square", "triangle"}
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("mAP50", "mAP50-95", "precision", "recall"))
    plots = tmp_path / "eval" / "plots"
    curve = json.loads((plots / "pr_curve.json").read_text())
    assert len(curve) == 101 and {"recall", "precision"} == set(curve[0])
    confusion = json.loads((plots / "confusion.json").read_text())
    labels = {"circle", "square", "triangle", "background"}
    assert confusion and all(row["actual"] in labels and row["predicted"] in labels for row in confusion)
    # Every true box of the test split is counted once: as a class, or as missed (predicted background).
    test_boxes = sum(len(p.read_text().splitlines())
                     for p in (trained.data_yaml.parent / "labels" / "test").glob("*.txt"))
    assert sum(row["actual"] != "background" for row in confusion) == test_boxes
    for image in ("pr_curve.png", "f1_curve.png", "confusion_matrix.png"):
        assert (plots / image).read_bytes().startswith(b"\x89PNG")


def test_falls_back_to_val_without_a_test_split(trained, tmp_path):
    staged = tmp_path / "staged"
    shutil.copytree(trained.data_yaml.parent, staged)
    description = yaml.safe_load((staged / "data.yaml").read_text())
    del description["test"]
    (staged / "data.yaml").write_text(yaml.safe_dump(description))
    assert held_out_split(staged / "data.yaml", "test") == "val"
    result = evaluate(EvaluateParams(), trained.result.best, staged / "data.yaml", tmp_path / "eval",
                      trained.scratch)
    assert result.split == "val"
