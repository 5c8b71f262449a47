"""export: write a deployable ONNX model and prove it predicts what the PyTorch model predicts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolopipe.dataset import load_dataset
from yolopipe.errors import PipelineError
from yolopipe.evaluate import held_out_split
from yolopipe.params import ExportParams
from yolopipe.ultra import load_ultralytics

PARITY_IMAGES = 50  # enough to catch a broken export; the held-out split may hold thousands


@dataclass(frozen=True)
class ExportResult:
    exported: dict[str, Path]
    parity: dict[str, dict]

    @property
    def summary(self) -> str:
        return "; ".join(f"{fmt}: {path} (max |diff| {self.parity[fmt]['max_abs_diff']:.2e}, "
                         f"{self.parity[fmt]['matching_images']}/{self.parity[fmt]['images']} images "
                         f"with identical detections)" for fmt, path in self.exported.items())


def export(params: ExportParams, weights: Path, data_yaml: Path, models_dir: Path, out_dir: Path,
           scratch_dir: Path) -> ExportResult:
    """Export `weights` to each format in params and check every export against PyTorch."""
    load_ultralytics(scratch_dir / "ultralytics")
    from ultralytics import YOLO

    dataset = load_dataset(data_yaml)
    images = list(dataset.images(held_out_split(data_yaml, "test")))[:PARITY_IMAGES]
    exported, parity = {}, {}
    for fmt in params.formats:
        model = YOLO(str(weights), task="detect")
        path = Path(model.export(format=fmt, simplify=params.simplify, opset=params.opset, verbose=False))
        target = models_dir / path.name
        _drop_export_date(path, target)
        exported[fmt] = target
        parity[fmt] = compare_onnx(weights, target, images)
        if parity[fmt]["max_abs_diff"] > params.max_abs_diff or parity[fmt]["mismatched_images"]:
            raise PipelineError(
                f"the {fmt} export disagrees with PyTorch: max |diff| {parity[fmt]['max_abs_diff']:.2e} "
                f"(tolerance {params.max_abs_diff:.0e}), {parity[fmt]['mismatched_images']} of "
                f"{parity[fmt]['images']} images with other detections",
                path=target, hint="re-run export; if it persists, try another export.opset or simplify: false")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(parity, indent=2) + "\n")
    return ExportResult(exported, parity)


def _drop_export_date(exported: Path, target: Path) -> None:
    """Move the export to `target` without Ultralytics' export timestamp, so a rerun writes the same bytes."""
    import onnx

    model = onnx.load(str(exported))
    kept = [p for p in model.metadata_props if p.key != "date"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(target))
    if exported.resolve() != target.resolve():
        exported.unlink()


def compare_onnx(weights: Path, onnx_path: Path, images: list[Path]) -> dict:
    """Run PyTorch and ONNX Runtime on the same letterboxed images; compare raw outputs and detections.

    Raw outputs are boxes in pixels and class scores in [0, 1]; boxes are divided by the image size
    before the difference is taken, so one tolerance serves imgsz 160 and 1280 alike."""
    import onnxruntime
    import torch
    from ultralytics import YOLO
    from ultralytics.utils.nms import non_max_suppression

    torch_model = YOLO(str(weights), task="detect").model.float().eval()
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    source = session.get_inputs()[0]
    imgsz = source.shape[2:]
    max_diff, mismatched = 0.0, []
    for image in images:
        batch = _letterbox(image, imgsz)
        with torch.no_grad():
            expected = torch_model(torch.from_numpy(batch))
        expected = expected[0] if isinstance(expected, (list, tuple)) else expected
        actual = torch.from_numpy(session.run(None, {source.name: batch})[0])
        difference = (expected - actual).abs()
        difference[:, :4] /= max(int(s) for s in imgsz)  # rows 0-3 are box centre and size in pixels
        max_diff = max(max_diff, float(difference.max()))
        ours, theirs = (non_max_suppression(out, conf_thres=0.25, iou_thres=0.7)[0] for out in (expected, actual))
        if not _same_detections(ours, theirs):
            mismatched.append(image.name)
    return {"max_abs_diff": max_diff, "images": len(images), "matching_images": len(images) - len(mismatched),
            "mismatched_images": len(mismatched)}


def _letterbox(image: Path, imgsz) -> np.ndarray:
    import cv2
    from ultralytics.data.augment import LetterBox

    pixels = cv2.imread(str(image))
    if pixels is None:
        raise PipelineError("cannot read image for the parity check", path=image)
    boxed = LetterBox(new_shape=tuple(int(s) for s in imgsz), auto=False)(image=pixels)
    rgb = boxed[..., ::-1].transpose(2, 0, 1)
    return np.ascontiguousarray(rgb, dtype=np.float32)[None] / 255.0


def _same_detections(a, b, pixel_tolerance: float = 1.0) -> bool:
    """Same number of boxes, same classes, corners within a pixel."""
    if a.shape != b.shape:
        return False
    if a.numel() == 0:
        return True
    return bool((a[:, 5] == b[:, 5]).all() and (a[:, :4] - b[:, :4]).abs().max() <= pixel_tolerance)
