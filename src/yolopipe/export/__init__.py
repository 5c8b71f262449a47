"""export: write deployable models, prove each predicts what the PyTorch model predicts, time them, and
leave a model card next to the weights."""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from yolopipe.dataset import held_out_split, load_dataset
from yolopipe.errors import PipelineError
from yolopipe.export.parity import compare_export, median_latency_ms
from yolopipe.params import ExportParams
from yolopipe.ultra import load_ultralytics

PARITY_IMAGES = 50  # enough to catch a broken export; the held-out split may hold thousands


@dataclass(frozen=True)
class ExportResult:
    exported: dict[str, Path]
    parity: dict[str, dict]
    metrics: dict[str, float]
    card: Path

    @property
    def summary(self) -> str:
        checks = "; ".join(
            f"{fmt}: {path} (max |diff| {self.parity[fmt]['max_abs_diff']:.2e}, "
            f"{self.parity[fmt]['matching_images']}/{self.parity[fmt]['images']} images with identical "
            f"detections, {self.metrics[f'{fmt}/latency_ms']:.1f} ms/image)" for fmt, path in self.exported.items())
        return f"{checks}; pytorch {self.metrics['pytorch/latency_ms']:.1f} ms/image; card {self.card}"


def export(params: ExportParams, weights: Path, data_yaml: Path, models_dir: Path, out_dir: Path,
           scratch_dir: Path, evaluation: Path | None = None, held_out: str = "test") -> ExportResult:
    """Export `weights` to each format in params, check every export against PyTorch on the held-out
    images (failing above params.max_abs_diff), time each on CPU at batch 1, and write the model card.
    `held_out` is evaluate.split, so the card's split is the one its evaluate metrics come from."""
    check_available(params.formats, params.half)
    load_ultralytics(scratch_dir / "ultralytics")
    from ultralytics import YOLO

    from yolopipe.export.modelcard import ExportRun, write_model_card

    dataset = load_dataset(data_yaml)
    split = held_out_split(dataset, held_out)
    images = sorted(dataset.images(split))[:PARITY_IMAGES]
    imgsz = params.imgsz or int(YOLO(str(weights), task="detect").overrides.get("imgsz", 640))
    exported, parity = {}, {}
    for fmt in params.formats:
        model = YOLO(str(weights), task="detect")
        model.add_callback("on_export_start", _without_export_date)
        path = Path(model.export(
            format=fmt, imgsz=imgsz, half=params.half, dynamic=params.dynamic, simplify=params.simplify,
            opset=params.opset, device="0" if fmt == "engine" else "cpu", verbose=False))
        target = models_dir / path.name
        if path.resolve() != target.resolve():
            shutil.move(str(path), str(target))
        exported[fmt] = target
        parity[fmt] = compare_export(weights, target, images, imgsz)
        if parity[fmt]["max_abs_diff"] > params.max_abs_diff or parity[fmt]["mismatched_images"]:
            raise PipelineError(
                f"the {fmt} export disagrees with PyTorch: max |diff| {parity[fmt]['max_abs_diff']:.2e} "
                f"(tolerance {params.max_abs_diff:.0e}), {parity[fmt]['mismatched_images']} of "
                f"{parity[fmt]['images']} images with other detections",
                path=target, hint="re-run export; if it persists, try another export.opset or simplify: false")
    metrics, speed = {}, {"pytorch/latency_ms": median_latency_ms(weights, images, imgsz)}
    for fmt, path in exported.items():
        figures = parity[fmt]
        metrics.update({f"{fmt}/max_abs_diff": figures["max_abs_diff"], f"{fmt}/images": figures["images"],
                        f"{fmt}/mismatched_images": figures["mismatched_images"]})
        speed[f"{fmt}/latency_ms"] = median_latency_ms(path, images, imgsz)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    # Latency depends on the machine and its load: a top-level metrics file DVC shows but does not hash.
    (out_dir / "speed.json").write_text(json.dumps(speed, indent=2) + "\n")
    card = write_model_card(models_dir / "model_card.json",
                            ExportRun(weights, data_yaml, split, imgsz, params, exported, parity, evaluation))
    return ExportResult(exported, parity, {**metrics, **speed}, card)


def check_available(formats: list[str], half: bool) -> None:
    """Fail before any work when a format needs a package or a GPU this machine lacks (we never pip-install)."""
    import torch

    gpu = torch.cuda.is_available()
    if "openvino" in formats and importlib.util.find_spec("openvino") is None:
        raise PipelineError("export.formats lists openvino but the openvino package is not installed",
                            path="params.yaml", hint="`pip install openvino` in this environment (it runs on "
                            "CPUs, Intel GPUs and NPUs), or remove openvino from export.formats")
    if "engine" in formats and not (gpu and importlib.util.find_spec("tensorrt") is not None):
        missing = "tensorrt package" if gpu else "NVIDIA GPU (and the tensorrt package)"
        raise PipelineError(f"export.formats lists engine (TensorRT) but this machine has no {missing}",
                            path="params.yaml", hint="run the export on a CUDA machine with `pip install "
                            "tensorrt`, or remove engine from export.formats")
    if half and "torchscript" in formats and not gpu:
        raise PipelineError("export.half with torchscript needs a GPU (PyTorch traces FP16 only on CUDA)",
                            path="params.yaml", hint="set export.half: false, or export on a CUDA machine")


def _without_export_date(exporter) -> None:
    """Ultralytics stamps every export with the time; without it a rerun writes the same bytes (dvc.lock)."""
    exporter.metadata.pop("date", None)
