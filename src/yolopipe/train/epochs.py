"""The work around the epochs: a dvclive step, models/last.pt with our stamp, the mirror, the remote checkpoint,
MLflow and a sweep's gate after each epoch; models/best.pt, train_args.yaml and the summary at the end.

It runs in the process that runs the epochs: the training process itself on one device, DDP's rank 0 on
several (yolopipe.train.ddp). So EpochWork is plain data until `open`, which only that process calls: then
it pickles into Ultralytics' DDP workers with the callbacks, and opens dvclive and the uploaders there.
The other ranks only take part in the stop check, which must agree across ranks.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from yolopipe.params import TrainParams
from yolopipe.train.portable import epoch_metrics, portable_args, save_portable_checkpoint
from yolopipe.train.ranks import LOCAL_RANK, RANK, runs_epoch_work
from yolopipe.train.resume import StopOnSignal, TrainingInterrupted
from yolopipe.train.sweep_control import SweepControl


@dataclass(frozen=True)
class RemoteSpec:
    """How to open yolopipe.train.checkpoints.RemoteCheckpoints (train.checkpoint_every)."""

    project: Path
    fingerprint: str
    every: int
    scratch_dir: Path


@dataclass(frozen=True)
class MlflowSpec:
    """How to open yolopipe.train.mlflow_mirror.MlflowMirror (train.mlflow_uri)."""

    uri: str
    params: dict
    tags: dict[str, str]


@dataclass
class EpochWork:
    params: TrainParams
    live_dir: Path
    models_dir: Path
    stamp: dict
    """Stored in every checkpoint we keep, so a resume knows it belongs to these params and data."""
    start_epoch: int = 0
    """0-based index of the first epoch this run trains."""
    resuming: bool = False
    mirror_dir: Path | None = None
    remote: RemoteSpec | None = None
    mlflow: MlflowSpec | None = None
    sweep: SweepControl | None = None
    stopper: StopOnSignal = field(default_factory=StopOnSignal)
    result: dict | None = None
    """Set by `finish`: epochs, metrics, stopped_early."""
    interrupted: bool = False
    _opened: _Opened | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.stopper.completed = self.start_epoch

    def __getstate__(self) -> dict:
        assert self._opened is None, "EpochWork is opened only in the process that runs the epochs"
        return self.__dict__

    @property
    def last(self) -> Path:
        return self.models_dir / "last.pt"

    @property
    def best(self) -> Path:
        return self.models_dir / "best.pt"

    def add_callbacks(self, model) -> None:
        """Register on an Ultralytics model; the order within an event matters (see each method)."""
        for event, callback in [
            ("on_pretrain_routine_start", use_every_core_on_cpu),
            ("on_pretrain_routine_end", self.install_in_rank),
            ("on_train_start", self.open_in_rank),
            ("on_train_epoch_start", self.check),
            ("on_train_epoch_start", self.start_epoch_step),
            ("on_train_batch_end", self.check),
            ("on_model_save", self.keep_last),
            ("on_fit_epoch_end", self.log_epoch),
            ("on_fit_epoch_end", self.upload_checkpoint),
            ("on_fit_epoch_end", self.check),
            *([("on_fit_epoch_end", self.gate)] if self.sweep else []),
            ("on_train_end", self.finish),
            ("teardown", self.close),
        ]:
            model.add_callback(event, callback)

    def open(self, checkpoints=None) -> None:
        """Open dvclive and the uploaders; only in the process that runs the epochs. `checkpoints`: the
        RemoteCheckpoints that process has open already (one device), rather than a second connection."""
        if self._opened is not None:
            return
        from dvclive import Live

        from yolopipe.train.checkpoints import RemoteCheckpoints
        from yolopipe.train.mirror import CheckpointMirror
        from yolopipe.train.mlflow_mirror import MlflowMirror

        mirror = mlflow = None
        if self.remote and checkpoints is None:
            spec = self.remote
            checkpoints = RemoteCheckpoints.open(spec.project, spec.fingerprint, spec.every, spec.scratch_dir)
        if self.mirror_dir:
            mirror = CheckpointMirror(self.mirror_dir)
        if self.mlflow:
            mlflow = MlflowMirror.open(self.mlflow.uri, self.mlflow.params, self.mlflow.tags)
        # dvcyaml=None: dvc.yaml declares our metrics and plots; save_dvc_exp=False: `dvc repro` makes no exp.
        live = Live(dir=str(self.live_dir), dvcyaml=None, save_dvc_exp=False, report=None, resume=self.resuming)
        live.step = self.start_epoch
        self._opened = _Opened(live, EpochLogger(live, mlflow), checkpoints, mirror, mlflow)

    def install_in_rank(self, trainer) -> None:
        """A DDP rank catches SIGTERM and SIGINT (yolopipe.train.ddp forwards them to every rank) and stops at
        the next check. A repeated signal changes nothing there: torch's agent sends one when another rank
        has exited, which must not cut rank 0's close short; the launcher kills the ranks on a second one."""
        if LOCAL_RANK != -1:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._note_signal)

    def _note_signal(self, signum: int, frame) -> None:
        if self.stopper.signum is None:
            self.stopper.signum = signum

    def open_in_rank(self, trainer) -> None:
        if LOCAL_RANK != -1 and runs_epoch_work():
            self.open()

    def check(self, trainer) -> None:
        """Stop here if a signal arrived (in any rank: every rank calls this at the same points)."""
        try:
            self.stopper.check(trainer)
        except TrainingInterrupted:
            self.interrupted = True
            raise

    def start_epoch_step(self, trainer) -> None:
        if self._opened:
            self._opened.logger.on_train_epoch_start(trainer)

    def keep_last(self, trainer) -> None:
        """After every epoch, so a kill -9 loses at most the epoch in progress (Ultralytics: rank 0 only)."""
        save_portable_checkpoint(Path(trainer.last), self.last, self.stamp)
        self.stopper.completed = trainer.epoch + 1

    def log_epoch(self, trainer) -> None:
        if self._opened:
            self._opened.logger.on_fit_epoch_end(trainer)

    def upload_checkpoint(self, trainer) -> None:
        """After the epoch's dvclive step, so the curves go with it."""
        if not self._opened or not self.stopper.completed:
            return
        mirror, checkpoints = self._opened.mirror, self._opened.checkpoints
        if mirror:
            try:
                mirror.after_epoch(self.last, self.live_dir)
            except OSError as exc:  # a full or vanished mirror disk must not stop the training
                print(f"yolopipe train: warning: epoch {self.stopper.completed} not mirrored to {mirror.root} "
                      f"({exc.strerror or exc}); training goes on", flush=True)
        if checkpoints:
            checkpoints.after_epoch(self.stopper.completed - 1, self.last, self.live_dir)

    def gate(self, trainer) -> None:
        if self._opened:  # rank 0 decides; Ultralytics broadcasts trainer.stop to the other ranks
            self.sweep.after_epoch(trainer)

    def finish(self, trainer) -> None:
        """Ultralytics' on_train_end (rank 0 only), after the final validation of best.pt."""
        if not self._opened:
            return
        live = self._opened.live
        weights = Path(trainer.save_dir) / "weights"
        save_portable_checkpoint(weights / "best.pt", self.best)
        save_portable_checkpoint(weights / "last.pt", self.last, self.stamp)
        args = portable_args(vars(trainer.args))
        (self.models_dir / "train_args.yaml").write_text(yaml.safe_dump(args, sort_keys=True))
        completed = trainer.epoch + 1
        stopped_early = completed < self.params.epochs
        live.log_metric("epochs_completed", completed, plot=False)
        live.log_metric("stopped_early", int(stopped_early), plot=False)
        self.result = {"epochs": completed, "metrics": epoch_metrics(trainer), "stopped_early": stopped_early}

    def close(self, trainer=None) -> None:
        """Ultralytics' teardown, also after an error: end dvclive, upload the last epoch after a signal, end
        MLflow with the run's status. In DDP's rank 0, leave the outcome for the launching process."""
        if self._opened is None:
            return
        opened, self._opened = self._opened, None
        status = "FINISHED" if self.result else "KILLED" if self.interrupted else "FAILED"
        opened.live.end()
        if opened.checkpoints:
            if status == "KILLED" and self.stopper.completed > 0:  # a spot notice: get the epoch off the box
                opened.checkpoints.after_epoch(self.stopper.completed - 1, self.last, self.live_dir, force=True)
            opened.checkpoints.wait()
        if opened.mlflow:
            opened.mlflow.close([self.best, self.models_dir / "train_args.yaml"] if status == "FINISHED" else [],
                                status)
        if RANK == 0 and trainer is not None:
            from yolopipe.train.launch import write_outcome

            write_outcome(Path(trainer.save_dir), {"status": status, "signum": self.stopper.signum,
                                                   "completed": self.stopper.completed, **(self.result or {})})


@dataclass
class _Opened:
    live: object
    logger: EpochLogger
    checkpoints: object
    mirror: object
    mlflow: object


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

    def __init__(self, live, mlflow=None) -> None:
        self.live = live
        self.mlflow = mlflow
        self.in_epoch = False

    def on_train_epoch_start(self, trainer) -> None:
        self.in_epoch = True

    def on_fit_epoch_end(self, trainer) -> None:
        metrics = epoch_metrics(trainer)
        for name, value in metrics.items():
            self.live.log_metric(name, value, plot=self.in_epoch)
        if self.in_epoch:
            if self.mlflow:
                self.mlflow.log_epoch(metrics, self.live.step)
            self.live.next_step()
        self.in_epoch = False
