"""Run an exported model next to PyTorch on the same letterboxed images: output parity and CPU latency.

Every format goes through Ultralytics' AutoBackend (loaded via yolopipe.ultra), so ONNX, TorchScript,
OpenVINO and TensorRT share one comparison and one timing loop."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from yolopipe.errors import PipelineError

LATENCY_RUNS, WARMUP_RUNS = 30, 3  # batch 1; the median of 30 runs is stable to a few percent on 2 cores


def compare_export(weights: Path, exported: Path, images: list[Path], imgsz: int) -> dict:
    """Raw outputs and NMS detections of `exported` against the PyTorch weights on `images`.

    Raw outputs are boxes in pixels and class scores in [0, 1]; boxes are divided by the image size
    before the difference is taken, so one tolerance serves imgsz 160 and 1280 alike."""
    import torch
    from ultralytics.utils.nms import non_max_suppression

    reference, candidate = _pytorch(weights), _backend(exported)
    max_diff, mismatched = 0.0, 0
    for image in images:
        batch = torch.from_numpy(letterbox(image, imgsz))
        with torch.no_grad():
            expected, actual = _first(reference(batch)).float(), _first(candidate(batch)).float()
        if expected.shape != actual.shape:
            raise PipelineError(f"output shape {tuple(actual.shape)} differs from PyTorch's "
                                f"{tuple(expected.shape)}", path=exported)
        difference = (expected - actual).abs()
        difference[:, :4] /= imgsz  # rows 0-3 are box centre and size in pixels
        max_diff = max(max_diff, float(difference.max()))
        ours, theirs = (non_max_suppression(out, conf_thres=0.25, iou_thres=0.7)[0] for out in (expected, actual))
        mismatched += not same_detections(ours, theirs)
    return {"max_abs_diff": max_diff, "images": len(images), "matching_images": len(images) - mismatched,
            "mismatched_images": mismatched}


def output_shapes(model_path: Path, imgsz: int) -> tuple[list[int], list[int]]:
    """Input and output shape of one batch-1 forward pass."""
    import torch

    model = _pytorch(model_path) if model_path.suffix == ".pt" else _backend(model_path)
    batch = torch.zeros(1, 3, imgsz, imgsz)
    with torch.no_grad():
        return list(batch.shape), list(_first(model(batch)).shape)


def median_latency_ms(model_path: Path, images: list[Path], imgsz: int) -> float:
    """Median wall time of one forward pass at batch 1 on the CPU, in ms (pre- and post-processing excluded)."""
    import torch

    model = _pytorch(model_path) if model_path.suffix == ".pt" else _backend(model_path)
    batches = [torch.from_numpy(letterbox(image, imgsz)) for image in images[:LATENCY_RUNS]] or \
        [torch.zeros(1, 3, imgsz, imgsz)]
    times = []
    with torch.no_grad():
        for run in range(WARMUP_RUNS + LATENCY_RUNS):
            start = time.perf_counter()
            model(batches[run % len(batches)])
            if run >= WARMUP_RUNS:
                times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def letterbox(image: Path, imgsz: int) -> np.ndarray:
    """The image as the model sees it: letterboxed to imgsz, RGB, NCHW float32 in [0, 1]."""
    import cv2
    from ultralytics.data.augment import LetterBox

    pixels = cv2.imread(str(image))
    if pixels is None:
        raise PipelineError("cannot read image for the parity check", path=image)
    boxed = LetterBox(new_shape=(imgsz, imgsz), auto=False)(image=pixels)
    rgb = boxed[..., ::-1].transpose(2, 0, 1)
    return np.ascontiguousarray(rgb, dtype=np.float32)[None] / 255.0


def same_detections(a, b, pixel_tolerance: float = 1.0) -> bool:
    """Same number of boxes, same classes, corners within a pixel."""
    if a.shape != b.shape:
        return False
    if a.numel() == 0:
        return True
    return bool((a[:, 5] == b[:, 5]).all() and (a[:, :4] - b[:, :4]).abs().max() <= pixel_tolerance)


def _pytorch(weights: Path):
    from ultralytics import YOLO

    return YOLO(str(weights), task="detect").model.float().eval()


def _backend(exported: Path):
    import torch
    from ultralytics.nn.autobackend import AutoBackend

    device = torch.device("cuda:0" if exported.suffix == ".engine" else "cpu")
    backend = AutoBackend(str(exported), device=device, fuse=False, verbose=False)
    return lambda batch: backend(batch.to(device))


def _first(output):
    """Detection models return (predictions, features) in PyTorch and a single tensor when exported."""
    import torch

    while isinstance(output, (list, tuple)):
        output = output[0]
    return output if isinstance(output, torch.Tensor) else torch.from_numpy(np.asarray(output))
