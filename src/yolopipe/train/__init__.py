"""train: Ultralytics training on the staged copy, driven by params.yaml, logged through dvclive."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yolopipe.errors import PipelineError
from yolopipe.params import TrainParams
from yolopipe.train.checkpoints import RemoteCheckpoints
from yolopipe.train.epochs import EpochLogger, EpochWork, MlflowSpec, RemoteSpec, use_every_core_on_cpu
from yolopipe.train.mirror import CheckpointMirror
from yolopipe.train.portable import save_portable_checkpoint
from yolopipe.train.ranks import training_device, visible_gpus
from yolopipe.train.resume import ResumePlan, drop_steps_from, fingerprint, plan_resume
from yolopipe.train.sweep_control import SweepControl
from yolopipe.ultra import load_ultralytics

__all__ = ["EpochLogger", "TrainResult", "resolve_model", "save_portable_checkpoint", "train",
           "use_every_core_on_cpu"]


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


def train(params: TrainParams, data_yaml: Path, models_dir: Path, live_dir: Path,
          scratch_dir: Path, mirror_dir: Path | None = None, sweep: SweepControl | None = None) -> TrainResult:
    """Train a detector on `data_yaml`; write best.pt/last.pt to `models_dir`, dvclive files to `live_dir`.
    An unfinished models/last.pt from the same params and data is continued (see yolopipe.train.resume); when
    there is none, the one in `mirror_dir` (see yolopipe.train.mirror) or, with train.checkpoint_every, the one
    this run left on the DVC remote (see yolopipe.train.checkpoints).
    A sweep trial's `sweep` control can end training after any epoch, as at a train.max_hours budget.
    With `train.device: auto` on a box with several GPUs, every GPU trains (yolopipe.train.ddp)."""
    model_source = resolve_model(params.model)
    load_ultralytics(scratch_dir / "ultralytics")
    models_dir.mkdir(parents=True, exist_ok=True)
    stamp = {"fingerprint": fingerprint(params, data_yaml.parent)}
    checkpoints = RemoteCheckpoints.open(Path.cwd(), stamp["fingerprint"], params.checkpoint_every, scratch_dir)
    mirror = CheckpointMirror(mirror_dir) if mirror_dir else None
    last = models_dir / "last.pt"
    if mirror and mirror.restore(last, live_dir):
        print(f"yolopipe train: restored {last} from {mirror.root}", flush=True)
    plan = plan_resume(last, stamp["fingerprint"])
    if plan.checkpoint is None and not plan.same_run and checkpoints and checkpoints.fetch(last, live_dir):
        print(f"yolopipe train: fetched this run's checkpoint from {checkpoints.url}", flush=True)
        plan = plan_resume(last, stamp["fingerprint"])
    print(f"yolopipe train: {plan.message}", flush=True)
    resuming = plan.checkpoint is not None
    mlflow = MlflowSpec(params.mlflow_uri, params.model_dump(mode="json", exclude={"mlflow_uri"}),
                        {"yolopipe.fingerprint": stamp["fingerprint"],
                         "yolopipe.resumed_at_epoch": str(plan.start_epoch + 1 if resuming else 0)})
    work = EpochWork(params, live_dir, models_dir, stamp, plan.start_epoch, resuming, mirror_dir,
                     RemoteSpec(Path.cwd(), stamp["fingerprint"], params.checkpoint_every, scratch_dir)
                     if checkpoints else None, mlflow if params.mlflow_uri else None, sweep)
    try:
        result = _fit(work, plan, data_yaml, model_source, scratch_dir, checkpoints)
    finally:
        work.close()  # after an error before Ultralytics' own teardown; else it has closed already
    if checkpoints:
        checkpoints.forget()
    return result


def _fit(work: EpochWork, plan: ResumePlan, data_yaml: Path, model_source: str, scratch_dir: Path,
         checkpoints: RemoteCheckpoints | None) -> TrainResult:
    from ultralytics import YOLO

    from yolopipe.train.ddp import Trainer  # imports Ultralytics: only after load_ultralytics

    params, resuming = work.params, plan.checkpoint is not None
    if resuming:
        drop_steps_from(work.live_dir, plan.start_epoch)
    model = YOLO(str(plan.checkpoint) if resuming else model_source, task="detect")
    device = training_device(params.device, params.batch, visible_gpus() if params.device == "auto" else 0)
    with work.stopper.installed():
        if not Trainer.launches_ranks(device):
            work.open(checkpoints)  # one device: the epochs run in this process, on the remote opened above
        work.add_callbacks(model)
        model.train(
            trainer=Trainer,
            data=str(data_yaml.resolve()), epochs=params.epochs, imgsz=params.imgsz, batch=params.batch,
            device=device, workers=params.workers, seed=params.seed,
            deterministic=params.deterministic, optimizer=params.optimizer, lr0=params.lr0,
            patience=params.patience, mosaic=params.mosaic, time=params.max_hours,
            project=str((scratch_dir / "runs").resolve()), name="train", exist_ok=True, plots=False,
            verbose=False, **({"resume": str(plan.checkpoint)} if resuming else {}),
        )
    result = work.result or getattr(model.trainer, "outcome", None)  # several devices: what rank 0 left
    return TrainResult(work.best, work.last, result["epochs"], result["metrics"], result["stopped_early"],
                       plan.start_epoch + 1 if resuming else None)


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
