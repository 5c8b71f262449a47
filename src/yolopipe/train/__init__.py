"""train: Ultralytics training on the staged copy, driven by params.yaml, logged through dvclive."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from yolopipe.errors import PipelineError
from yolopipe.params import TrainParams
from yolopipe.train.checkpoints import RemoteCheckpoints
from yolopipe.train.mirror import CheckpointMirror
from yolopipe.train.mlflow_mirror import MlflowMirror
from yolopipe.train.resume import (
    STAMP_KEY,
    ResumePlan,
    StopOnSignal,
    TrainingInterrupted,
    drop_steps_from,
    fingerprint,
    plan_resume,
)
from yolopipe.train.sweep_control import SweepControl
from yolopipe.ultra import load_ultralytics


@dataclass(frozen=True)
class TrainResult:
    best: Path
    last: Path
    epochs: int
    metrics: dict[str, float]
    stopped_early: bool = False  # fewer epochs than train.epochs ran (train.max_hours or patience)
    resumed_from: int | None = None  # the 1-based epoch a resumed run continued at

    @property
    def summary(self) -> str:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in self.metrics.items() if k.startswith("val/mAP"))
        how = f" (resumed at epoch {self.resumed_from})" if self.resumed_from else ""
        how += " (stopped early)" if self.stopped_early else ""
        return f"trained {self.epochs} epochs{how}: {shown}; weights in {self.best.parent}"


@dataclass(frozen=True)
class TrainRun:
    """One training run: its params, the model it starts from, and where it reads and writes."""

    params: TrainParams
    data_yaml: Path
    model_source: str
    """A model yaml (from scratch) or a local .pt, as resolve_model returned it."""
    models_dir: Path
    live_dir: Path
    """dvclive's directory."""
    scratch_dir: Path
    """Ultralytics' settings and run folders."""
    stamp: dict
    """Stored in every checkpoint we keep, so a resume knows it belongs to these params and data."""
    checkpoints: RemoteCheckpoints | None
    """Uploads to the DVC remote (train.checkpoint_every), or None."""
    mirror: CheckpointMirror | None = None
    """A local directory kept in step after every epoch (YOLOPIPE_CHECKPOINT_DIR), or None."""
    mlflow: MlflowMirror | None = None
    """The MLflow mirror (train.mlflow_uri), or None."""
    sweep: SweepControl | None = None
    """A sweep trial's early stop and epoch gate (yolopipe.train.sweep_control), or None."""

    @property
    def best(self) -> Path:
        return self.models_dir / "best.pt"

    @property
    def last(self) -> Path:
        return self.models_dir / "last.pt"


def train(params: TrainParams, data_yaml: Path, models_dir: Path, live_dir: Path,
          scratch_dir: Path, mirror_dir: Path | None = None, sweep: SweepControl | None = None) -> TrainResult:
    """Train a detector on `data_yaml`; write best.pt/last.pt to `models_dir`, dvclive files to `live_dir`.
    An unfinished models/last.pt from the same params and data is continued (see yolopipe.train.resume); when
    there is none, the one in `mirror_dir` (see yolopipe.train.mirror) or, with train.checkpoint_every, the one
    this run left on the DVC remote (see yolopipe.train.checkpoints).
    A sweep trial's `sweep` control can end training after any epoch, as at a train.max_hours budget."""
    model_source = resolve_model(params.model)
    load_ultralytics(scratch_dir / "ultralytics")
    models_dir.mkdir(parents=True, exist_ok=True)
    stamp = {"fingerprint": fingerprint(params, data_yaml.parent)}
    checkpoints = RemoteCheckpoints.open(Path.cwd(), stamp["fingerprint"], params.checkpoint_every, scratch_dir)
    mirror = CheckpointMirror(mirror_dir) if mirror_dir else None
    run = TrainRun(params, data_yaml, model_source, models_dir, live_dir, scratch_dir, stamp, checkpoints, mirror,
                   sweep=sweep)
    if mirror and mirror.restore(run.last, live_dir):
        print(f"yolopipe train: restored {run.last} from {mirror.root}", flush=True)
    plan = plan_resume(run.last, stamp["fingerprint"])
    if plan.checkpoint is None and not plan.same_run and checkpoints and checkpoints.fetch(run.last, live_dir):
        print(f"yolopipe train: fetched this run's checkpoint from {checkpoints.url}", flush=True)
        plan = plan_resume(run.last, stamp["fingerprint"])
    print(f"yolopipe train: {plan.message}", flush=True)
    mlflow = MlflowMirror.open(params.mlflow_uri, params.model_dump(mode="json", exclude={"mlflow_uri"}),
                               {"yolopipe.fingerprint": stamp["fingerprint"],
                                "yolopipe.resumed_at_epoch": str(plan.start_epoch + 1 if plan.checkpoint else 0)})
    run = replace(run, mlflow=mlflow)
    status = "FAILED"
    try:
        result = _fit(run, plan)
        status = "FINISHED"
    except TrainingInterrupted as stop:  # a spot instance's notice: get the last finished epoch off the box
        status = "KILLED"
        if checkpoints and stop.completed > 0:
            checkpoints.after_epoch(stop.completed - 1, run.last, live_dir, force=True)
        raise
    finally:
        if checkpoints:
            checkpoints.wait()
        if mlflow:
            mlflow.close([run.best, models_dir / "train_args.yaml"] if status == "FINISHED" else [], status)
    if checkpoints:
        checkpoints.forget()
    return result


def _fit(run: TrainRun, plan: ResumePlan) -> TrainResult:
    from dvclive import Live
    from ultralytics import YOLO

    params, best, last, checkpoints = run.params, run.best, run.last, run.checkpoints
    resuming = plan.checkpoint is not None
    if resuming:
        drop_steps_from(run.live_dir, plan.start_epoch)
    model = YOLO(str(plan.checkpoint) if resuming else run.model_source, task="detect")
    run_dir = (run.scratch_dir / "runs").resolve()
    stopper = StopOnSignal(completed=plan.start_epoch)

    def keep_last(trainer) -> None:  # after every epoch, so a kill -9 loses at most the epoch in progress
        save_portable_checkpoint(Path(trainer.last), last, run.stamp)
        stopper.completed = trainer.epoch + 1

    def upload_checkpoint(trainer) -> None:  # after the epoch's dvclive step, so the curves go with it
        if run.mirror and stopper.completed:
            try:
                run.mirror.after_epoch(last, run.live_dir)
            except OSError as exc:  # a full or vanished mirror disk must not stop the training
                print(f"yolopipe train: warning: epoch {stopper.completed} not mirrored to {run.mirror.root} "
                      f"({exc.strerror or exc}); training goes on", flush=True)
        if checkpoints and stopper.completed:
            checkpoints.after_epoch(stopper.completed - 1, last, run.live_dir)

    # dvcyaml=None: dvc.yaml declares our metrics and plots; save_dvc_exp=False: `dvc repro` makes no exp.
    with stopper.installed(), Live(dir=str(run.live_dir), dvcyaml=None, save_dvc_exp=False, report=None,
                                   resume=resuming) as live:
        live.step = plan.start_epoch
        logger = EpochLogger(live, run.mlflow)
        model.add_callback("on_pretrain_routine_start", use_every_core_on_cpu)
        model.add_callback("on_train_epoch_start", stopper.check)
        model.add_callback("on_train_epoch_start", logger.on_train_epoch_start)
        model.add_callback("on_train_batch_end", stopper.check)
        model.add_callback("on_model_save", keep_last)
        model.add_callback("on_fit_epoch_end", logger.on_fit_epoch_end)
        model.add_callback("on_fit_epoch_end", upload_checkpoint)
        model.add_callback("on_fit_epoch_end", stopper.check)
        if run.sweep:
            model.add_callback("on_fit_epoch_end", run.sweep.after_epoch)
        model.train(
            data=str(run.data_yaml.resolve()), epochs=params.epochs, imgsz=params.imgsz, batch=params.batch,
            device=None if params.device == "auto" else params.device, workers=params.workers, seed=params.seed,
            deterministic=params.deterministic, optimizer=params.optimizer, lr0=params.lr0,
            patience=params.patience, mosaic=params.mosaic, time=params.max_hours,
            project=str(run_dir), name="train", exist_ok=True, plots=False, verbose=False,
            **({"resume": str(plan.checkpoint)} if resuming else {}),
        )
        trainer = model.trainer
        weights = Path(trainer.save_dir) / "weights"
        save_portable_checkpoint(weights / "best.pt", best)
        save_portable_checkpoint(weights / "last.pt", last, run.stamp)
        args = _portable_args(vars(trainer.args))
        (run.models_dir / "train_args.yaml").write_text(yaml.safe_dump(args, sort_keys=True))
        completed = trainer.epoch + 1
        stopped_early = completed < params.epochs
        live.log_metric("epochs_completed", completed, plot=False)
        live.log_metric("stopped_early", int(stopped_early), plot=False)
        return TrainResult(best, last, completed, _epoch_metrics(trainer), stopped_early,
                           plan.start_epoch + 1 if resuming else None)


def save_portable_checkpoint(source: Path, target: Path, stamp: dict | None = None) -> None:
    """Copy an Ultralytics checkpoint without its save date, git state, wall-clock epoch times and absolute
    paths, so the same training on the same hardware gives byte-identical weights and dvc.lock does not
    change on a rerun. (Provenance lives in git and dvc.lock.) `stamp` is stored under STAMP_KEY."""
    import torch

    checkpoint = torch.load(source, map_location="cpu", weights_only=False)
    checkpoint.pop("date", None)
    checkpoint.pop("git", None)
    if isinstance(checkpoint.get("train_results"), dict):
        checkpoint["train_results"].pop("time", None)
    if isinstance(checkpoint.get("train_args"), dict):
        checkpoint["train_args"] = _portable_args(checkpoint["train_args"])
    for key in ("model", "ema"):  # the model objects carry their own copy of the arguments
        model = checkpoint.get(key)
        if isinstance(getattr(model, "args", None), dict):
            model.args = _portable_args(model.args)
    if stamp is not None:
        checkpoint[STAMP_KEY] = stamp
    # torch.save names the archive after the file, so write under the final name, then rename atomically.
    partial = target.parent / ".partial" / target.name
    partial.parent.mkdir(exist_ok=True)
    torch.save(checkpoint, partial)
    partial.replace(target)
    partial.parent.rmdir()


def _portable_args(args: dict) -> dict:
    """Ultralytics' effective arguments with paths relative to the working directory."""
    cwd = Path.cwd()
    portable = {}
    for key, value in args.items():
        if isinstance(value, Path):
            value = str(value)
        if isinstance(value, str) and Path(value).is_absolute() and Path(value).is_relative_to(cwd):
            value = Path(value).relative_to(cwd).as_posix()
        portable[key] = value
    return portable


def resolve_model(name: str) -> str:
    """A model yaml builds from scratch; a .pt must already be on disk (Ultralytics would download it)."""
    if name.endswith(".pt"):
        path = Path(name)
        if not path.is_file():
            raise PipelineError(
                f"pretrained weights {name} not found; yolopipe never downloads weights",
                hint=f"put the file at {path} and track it: `dvc add {path}` "
                     f"(or `dvc import-url <url> {path}`), then commit {path}.dvc",
            )
        return str(path)
    if not name.endswith((".yaml", ".yml")):
        raise PipelineError(f"train.model must be a model .yaml or a local .pt file, got '{name}'",
                            path="params.yaml")
    return name


def _epoch_metrics(trainer) -> dict[str, float]:
    """Ultralytics' per-epoch figures under plain names: val/mAP50 rather than metrics/mAP50(B)."""
    raw = {**trainer.label_loss_items(trainer.tloss, prefix="train"), **trainer.metrics, **trainer.lr}
    return {key.replace("metrics/", "val/").replace("(B)", ""): float(value) for key, value in raw.items()}


def use_every_core_on_cpu(trainer) -> None:
    """Ultralytics trains on cores-1 torch threads (1 on a 2-core box); all of them measured 1.57x faster
    per epoch on 2 idle cores (bench/cpu_threads.py). OMP_NUM_THREADS, when set (a sweep sets it to the
    trial's CPUs, so concurrent trials do not oversubscribe the cores), wins."""
    if trainer.device.type == "cpu":
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1)


class EpochLogger:
    """One dvclive step (and MLflow step, with the mirror) per training epoch. Ultralytics fires
    on_fit_epoch_end once more after training, for its final validation of best.pt: those figures become the
    summary, not an extra step."""

    def __init__(self, live, mlflow: MlflowMirror | None = None) -> None:
        self.live = live
        self.mlflow = mlflow
        self.in_epoch = False

    def on_train_epoch_start(self, trainer) -> None:
        self.in_epoch = True

    def on_fit_epoch_end(self, trainer) -> None:
        metrics = _epoch_metrics(trainer)
        for name, value in metrics.items():
            self.live.log_metric(name, value, plot=self.in_epoch)
        if self.in_epoch:
            if self.mlflow:
                self.mlflow.log_epoch(metrics, self.live.step)
            self.live.next_step()
        self.in_epoch = False
