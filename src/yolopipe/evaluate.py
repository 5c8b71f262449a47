"""evaluate: score best.pt on the held-out split; write metrics and plots that `dvc metrics/plots` read."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from yolopipe.params import EvaluateParams
from yolopipe.ultra import load_ultralytics

# PNG copies of Ultralytics' own plots, for readers without the vega CDN that `dvc plots show` loads.
ULTRALYTICS_PLOTS = {"BoxPR_curve.png": "pr_curve.png", "BoxF1_curve.png": "f1_curve.png",
                     "confusion_matrix.png": "confusion_matrix.png"}
PR_CURVE_POINTS = 101  # Ultralytics samples 1000 recall points; 101 draw the same curve in a tenth the bytes


@dataclass(frozen=True)
class EvaluationResult:
    split: str
    metrics: dict
    metrics_path: Path

    @property
    def summary(self) -> str:
        m = self.metrics
        return (f"{self.split} split: mAP50 {m['mAP50']:.3f}, mAP50-95 {m['mAP50-95']:.3f}, "
                f"precision {m['precision']:.3f}, recall {m['recall']:.3f} -> {self.metrics_path}")


def evaluate(params: EvaluateParams, weights: Path, data_yaml: Path, out_dir: Path,
             scratch_dir: Path) -> EvaluationResult:
    """Validate `weights` on the test split (val when the dataset has none) and write the results."""
    split = held_out_split(data_yaml, params.split)
    load_ultralytics(scratch_dir / "ultralytics")
    from ultralytics import YOLO

    results = YOLO(str(weights), task="detect").val(
        data=str(data_yaml.resolve()), split=split, batch=params.batch, conf=params.conf, iou=params.iou,
        plots=True, project=str((scratch_dir / "runs").resolve()), name="evaluate", exist_ok=True,
        verbose=False,
    )
    names = [results.names[i] for i in sorted(results.names)]
    metrics = _metrics(results, names)
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / "metrics.json", metrics)
    _write_json(plots_dir / "pr_curve.json", _pr_curve(results))
    _write_json(plots_dir / "confusion.json", _confusion_rows(results.confusion_matrix.matrix, names))
    for theirs, ours in ULTRALYTICS_PLOTS.items():
        shutil.copyfile(Path(results.save_dir) / theirs, plots_dir / ours)
    return EvaluationResult(split, metrics, out_dir / "metrics.json")


def held_out_split(data_yaml: Path, wanted: str) -> str:
    """The split to score: `wanted` when the dataset has it, else val."""
    description = yaml.safe_load(data_yaml.read_text())
    return wanted if description.get(wanted) else "val"


def _metrics(results, names: list[str]) -> dict:
    box = results.box
    per_class = {name: {"AP50": 0.0, "AP50-95": 0.0} for name in names}
    for i, class_id in enumerate(box.ap_class_index):
        per_class[names[class_id]] = {"AP50": _round(box.ap50[i]), "AP50-95": _round(box.ap[i])}
    return {"mAP50": _round(box.map50), "mAP50-95": _round(box.map), "precision": _round(box.mp),
            "recall": _round(box.mr), "per_class": per_class}


def _pr_curve(results) -> list[dict]:
    """The mean precision-recall curve over classes, as rows DVC's linear template draws."""
    recall, precision = results.box.px, np.asarray(results.box.prec_values)
    if precision.size == 0:
        return []
    mean = precision.mean(axis=0)
    keep = np.linspace(0, len(recall) - 1, PR_CURVE_POINTS).round().astype(int)
    return [{"recall": _round(recall[i]), "precision": _round(mean[i])} for i in keep]


def _confusion_rows(matrix: np.ndarray, names: list[str]) -> list[dict]:
    """One row per counted detection, as DVC's confusion template wants. Ultralytics' matrix is
    [predicted, actual] with a last row/column for background (missed or spurious boxes)."""
    labels = [*names, "background"]
    rows = []
    for predicted, actual in zip(*np.nonzero(matrix), strict=True):
        rows += [{"actual": labels[actual], "predicted": labels[predicted]}] * int(matrix[predicted, actual])
    return rows


def _round(value) -> float:
    return round(float(value), 5)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
