"""The measurements of bench/gpu_check.sh (run that): CUDA training with AMP through yolopipe's own train(),
the data loader from three copies of one dataset, and the ONNX export with CUDA ONNX Runtime when installed.

    python bench/gpu_check.py train WORK/coco-like WORK --epochs 4 --batch 32
    python bench/gpu_check.py loader WORK/loader-1080p WORK
    python bench/gpu_check.py export WORK/coco-like WORK

`--device cpu --imgsz 64` runs the training part on a CPU, without the GPU figures: a smoke test of this script.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # bench/stage.py's loader benchmark

from yolopipe.params import ExportParams, StageParams, TrainParams  # noqa: E402
from yolopipe.stage import stage  # noqa: E402


class UtilisationSampler:
    """`nvidia-smi --query-gpu=utilization.gpu` every 200 ms in the background, each sample timestamped."""

    def __init__(self, gpu: int = 0) -> None:
        self.samples: list[tuple[float, int]] = []
        self._process = subprocess.Popen(
            ["nvidia-smi", f"--id={gpu}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
             "-lms", "200"], stdout=subprocess.PIPE, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._process.stdout:
            if line.strip().isdigit():
                self.samples.append((time.monotonic(), int(line)))

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait()

    def mean(self, windows: list[tuple[float, float]]) -> float | None:
        inside = [u for t, u in self.samples if any(start <= t <= end for start, end in windows)]
        return statistics.mean(inside) if inside else None


class EpochClock:
    """The training part of each epoch (not its validation), through Ultralytics' callbacks."""

    def __init__(self, on_gpu: bool) -> None:
        self.on_gpu = on_gpu
        self.windows: list[tuple[float, float]] = []
        self.amp: bool | None = None
        self._start = 0.0

    def install(self) -> None:
        # Every trainer deep-copies Ultralytics' default callbacks, so this reaches the one yolopipe's train()
        # makes. Plain functions: deepcopy keeps those as they are, but would copy a bound method's instance.
        from ultralytics.utils import callbacks

        callbacks.default_callbacks["on_train_epoch_start"].append(lambda trainer: self._epoch_start(trainer))
        callbacks.default_callbacks["on_train_epoch_end"].append(lambda trainer: self._epoch_end(trainer))

    def _epoch_start(self, trainer) -> None:
        self.amp = bool(trainer.amp)
        self._start = time.monotonic()

    def _epoch_end(self, trainer) -> None:
        if self.on_gpu:  # CUDA runs asynchronously: the epoch ends when its last kernel does
            import torch

            torch.cuda.synchronize()
        self.windows.append((self._start, time.monotonic()))


def train_check(dataset: Path, work: Path, epochs: int, batch: int, workers: int, device: str, imgsz: int) -> None:
    import torch

    from yolopipe.train import train
    from yolopipe.ultra import load_ultralytics

    load_ultralytics(work / "scratch" / "ultralytics")
    staged = stage(dataset, work / "staged", StageParams(link=False))
    images = len(list((staged.staged_root / "images" / "train").iterdir()))
    params = TrainParams(epochs=epochs, imgsz=imgsz, batch=batch, device=device, workers=workers)
    print(f"training: {images} train images at imgsz {imgsz}, batch {batch}, {epochs} epochs, {workers} workers, "
          f"{params.model}, deterministic {params.deterministic}, device {device}", flush=True)
    on_gpu = device != "cpu"
    clock = EpochClock(on_gpu)
    clock.install()
    sampler = UtilisationSampler(int(device)) if on_gpu else None
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(int(device))
    os.chdir(work)  # train() keeps its resume fingerprint relative to the working directory
    try:
        result = train(params, staged.data_yaml, work / "models", work / "live", work / "scratch")
    finally:
        if sampler:
            sampler.stop()
    steady = clock.windows[1:] or clock.windows  # the first epoch also pays for cuDNN autotuning and warm-up
    seconds = [end - start for start, end in steady]
    epoch_s = statistics.mean(seconds)
    util = sampler.mean(steady) if sampler else None
    print(f"AMP: {'on' if clock.amp else 'OFF'}")
    print(f"epoch time (training part, epochs 2-{epochs}): {epoch_s:.1f} s (per epoch: "
          f"{', '.join(f'{end - start:.1f}' for start, end in clock.windows)} s)")
    print(f"images/s: {images / epoch_s:.0f}")
    if on_gpu:
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(int(device)) / 2**30:.2f} GiB allocated, "
              f"{torch.cuda.max_memory_reserved(int(device)) / 2**30:.2f} GiB reserved by PyTorch")
        print(f"mean GPU utilisation over those epochs: {util:.0f}% ({len(sampler.samples)} samples)"
              if util is not None else "mean GPU utilisation: no nvidia-smi samples")
    print(result.summary)


def loader_check(dataset: Path, work: Path, warm: bool) -> None:
    from stage import _loader_rate, _read_all  # bench/stage.py

    # `dataset` is the synthetic one gpu_check.sh made: Ultralytics writes its label cache into the copy it reads.
    stage_dir = os.environ.get("YOLOPIPE_STAGE_DIR")
    staged = stage(dataset, work / "loader-staged", StageParams(link=False), Path(stage_dir) if stage_dir else None)
    resized = stage(dataset, work / "loader-640", StageParams(link=False, max_side=640))
    copies = {"original location": dataset / "data.yaml", "staged copy": staged.data_yaml,
              "pre-resized to 640": resized.data_yaml}
    cold = not warm and os.geteuid() == 0 and os.access("/proc/sys/vm/drop_caches", os.W_OK)
    print(f"loader: Ultralytics' training loader (no model), imgsz 640, batch 16, {min(os.cpu_count() or 1, 8)} "
          f"workers; staged copy in {stage_dir or work}; "
          + ("page cache dropped before each" if cold else "warm page cache (--warm, or not root: not dropped)"))
    rates = {}
    for name, data_yaml in copies.items():
        if cold:
            subprocess.run(["sync"], check=True)
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
        else:
            _read_all(data_yaml.parent)
        rates[name] = _loader_rate(data_yaml)
    for name, rate in rates.items():
        print(f"  {name:20s} {rate:7.1f} images/s  {rate / rates['original location']:.2f}x the original")


def export_check(dataset: Path, work: Path) -> None:
    import numpy as np
    import onnxruntime

    from yolopipe.export import export

    result = export(ExportParams(formats=["onnx"]), work / "models" / "best.pt", work / "staged" / "data.yaml",
                    work / "models", work / "export", work / "scratch")
    print(f"export: {result.summary}")
    providers = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        print(f"CUDA ONNX Runtime: not available (onnxruntime {onnxruntime.__version__} has {', '.join(providers)}; "
              "requirements.lock installs the CPU build). Not measured.")
        return
    batch = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
    for provider in ("CUDAExecutionProvider", "CPUExecutionProvider"):
        session = onnxruntime.InferenceSession(str(result.exported["onnx"]), providers=[provider])
        name = session.get_inputs()[0].name
        for _ in range(10):
            session.run(None, {name: batch})
        started = time.perf_counter()
        for _ in range(100):
            session.run(None, {name: batch})
        print(f"ONNX Runtime {provider}: {(time.perf_counter() - started) * 10:.2f} ms/image at batch 1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=["train", "loader", "export"])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    parser.add_argument("--device", default="0", help="GPU index, or cpu for a smoke test of this script")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--warm", action="store_true", help="loader: keep the page cache (a shared machine)")
    args = parser.parse_args()
    dataset, work = args.dataset.resolve(), args.work.resolve()
    if args.check == "train":
        train_check(dataset, work, args.epochs, args.batch, args.workers, args.device, args.imgsz)
    elif args.check == "loader":
        loader_check(dataset, work, args.warm)
    else:
        export_check(dataset, work)


if __name__ == "__main__":
    main()
