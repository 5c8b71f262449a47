"""evaluate: score best.pt on the held-out split; write metrics and plots that `dvc metrics/plots` read."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from yolopipe.dataset import held_out_split, load_dataset
from yolopipe.evaluate.plots import class_curves, confusion_rows, draw_boxes
from yolopipe.params import EvaluateParams
from yolopipe.ultra import load_ultralytics

# PNG copies of Ultralytics' own plots, for readers without the vega CDN that `dvc plots show` loads.
ULTRALYTICS_PLOTS = {"BoxPR_curve.png": "pr_curve.png", "BoxF1_curve.png": "f1_curve.png",
                     "confusion_matrix.png": "confusion_matrix.png"}
SPEED_KEYS = ("preprocess", "inference", "postprocess")  # Ultralytics' ms per image of each step


@dataclass(frozen=True)
class EvaluationResult:
    split: str
    metrics: dict
    speed: dict
    metrics_path: Path

    @property
    def summary(self) -> str:
        m = self.metrics
        return (f"{self.split} split: mAP50 {m['mAP50']:.3f}, mAP50-95 {m['mAP50-95']:.3f}, "
                f"mAP75 {m['mAP75']:.3f}, precision {m['precision']:.3f}, recall {m['recall']:.3f}, "
                f"{self.speed['speed/inference_ms']:.1f} ms/image -> {self.metrics_path}")


def evaluate(params: EvaluateParams, weights: Path, data_yaml: Path, out_dir: Path,
             scratch_dir: Path) -> EvaluationResult:
    """Validate `weights` on the test split (val when the dataset has none) and write the results."""
    dataset = load_dataset(data_yaml)
    split = held_out_split(dataset, params.split)
    load_ultralytics(scratch_dir / "ultralytics")
    from ultralytics import YOLO

    model = YOLO(str(weights), task="detect")
    run_dir = (scratch_dir / "runs").resolve()
    results = model.val(
        data=str(data_yaml.resolve()), split=split, batch=params.batch, conf=params.conf, iou=params.iou,
        plots=True, project=str(run_dir), name="evaluate", exist_ok=True, verbose=False,
    )
    names = [results.names[i] for i in sorted(results.names)]
    metrics = detection_metrics(results, names)
    speed = {f"speed/{step}_ms": round(float(results.speed.get(step, 0.0)), 3) for step in SPEED_KEYS}
    plots_dir = out_dir / "plots"
    if plots_dir.exists():  # drop images of an earlier run, so the folder holds exactly this run's plots
        shutil.rmtree(plots_dir)
    plots_dir.mkdir(parents=True)
    box = results.box
    _write_json(out_dir / "metrics.json", metrics)
    # Timings depend on the machine and its load, not on the inputs: they go to a top-level metrics file
    # that DVC shows but does not hash, so re-running the stage reproduces dvc.lock exactly.
    _write_json(out_dir / "speed.json", speed)
    _write_json(plots_dir / "pr_curves.json",
                class_curves(box.px, box.prec_values, box.ap_class_index, names, "recall", "precision"))
    _write_json(plots_dir / "f1_curves.json",
                class_curves(box.px, box.f1_curve, box.ap_class_index, names, "confidence", "f1"))
    _write_json(plots_dir / "confusion.json", confusion_rows(results.confusion_matrix.matrix, names))
    for theirs, ours in ULTRALYTICS_PLOTS.items():
        shutil.copyfile(Path(results.save_dir) / theirs, plots_dir / ours)
    (plots_dir / "images").mkdir()  # declared as a plot directory in dvc.yaml, so it exists even when empty
    images = sorted(dataset.images(split))[:params.images]
    predictions = model.predict([str(p) for p in images], conf=params.plot_conf, iou=params.iou, verbose=False,
                                save=False, project=str(run_dir), name="predict") if images else []
    for image, prediction in zip(images, predictions, strict=True):
        rows = prediction.boxes.data[:, :6].cpu().numpy() if prediction.boxes is not None else []
        draw_boxes(image, rows, names, plots_dir / "images" / f"{image.stem}.png")
    return EvaluationResult(split, metrics, speed, out_dir / "metrics.json")


def detection_metrics(results, names: list[str]) -> dict[str, float]:
    """One level of keys (mAP50, AP50/circle) so `dvc metrics diff` and
    `dvc exp show` list every figure as its own column. Classes absent from the split score 0."""
    box = results.box
    # Key order is column order in `dvc exp show`: the headline figures first.
    metrics = {"mAP50-95": _round(box.map), "mAP50": _round(box.map50), "precision": _round(box.mp),
               "recall": _round(box.mr), "mAP75": _round(box.map75)}
    per_class = {name: (0.0, 0.0) for name in names}
    for i, class_id in enumerate(box.ap_class_index):
        per_class[names[class_id]] = (_round(box.ap50[i]), _round(box.ap[i]))
    metrics.update({f"AP50/{name}": ap50 for name, (ap50, _) in per_class.items()})
    metrics.update({f"AP50-95/{name}": ap for name, (_, ap) in per_class.items()})
    return metrics


def _round(value) -> float:
    return round(float(value), 5)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
