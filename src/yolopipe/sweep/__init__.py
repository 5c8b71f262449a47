"""sweep: a hyperparameter search whose every trial is a real DVC experiment, run on Ray Tune.

`yolopipe sweep sweep.yaml` checks the space against params.yaml's schema, starts (or joins) Ray, and runs
one `dvc exp run -S ...` per trial in its own clone (yolopipe.sweep.trial). ASHA stops weak trials early
as short, complete experiments (yolopipe.sweep.asha). Every finished trial shows in `dvc exp show`.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from yolopipe import paths
from yolopipe.errors import PipelineError
from yolopipe.sweep.config import SweepConfig, load_sweep
from yolopipe.sweep.trial import STOP_BOARD, TrialJob, experiment_name, run_trial, trial_dir

# Offline and quiet: no usage report to anyscale.com (include_dashboard=False: no dashboard server). Read
# when Ray is imported.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_IMPORT_WARNING": "1"}
# A local Ray (no ray_address) on loopback only: not reachable from the network, and it needs no lookup of
# the machine's own address (Ray's name for this switch is about macOS and Windows, where it is the default).
LOCAL_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@dataclass
class TrialOutcome:
    experiment: str
    params: dict
    status: str  # "completed", "stopped early" or "failed"
    metric: float | None = None
    epochs: int | None = None
    log: str = ""
    error: str = ""


@dataclass
class SweepResult:
    config: SweepConfig
    trials: list[TrialOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def best(self) -> TrialOutcome | None:
        metric, mode = self.config.objective
        scored = [t for t in self.trials if t.status != "failed" and t.metric is not None]
        if not scored:
            return None
        return (max if mode == "max" else min)(scored, key=lambda t: t.metric)

    @property
    def summary(self) -> str:
        metric, _ = self.config.objective
        lines = [f"sweep {self.config.name}: {len(self.trials)} trials in {self.seconds:.0f} s"]
        for t in self.trials:
            shown = f"{metric} {t.metric:.4f} after {t.epochs} epochs" if t.metric is not None else ""
            detail = f"{shown}" if t.status != "failed" else f"{t.error} (log: {t.log})"
            lines.append(f"  {t.experiment}  {t.status:<13} {_fmt(t.params)}  {detail}")
        best = self.best
        if best:
            lines.append(f"best: {best.experiment} ({metric} {best.metric:.4f}): {_fmt(best.params)}")
            lines.append(f"  `dvc exp show`, `dvc exp apply {best.experiment}` to take it into the workspace")
        else:
            lines.append("best: none (no trial finished)")
        return "\n".join(lines)


def run_sweep(sweep_file: Path, project: Path, params_file: Path = Path("params.yaml")) -> SweepResult:
    """Run the sweep in `sweep_file` on the project's HEAD commit; every trial a `dvc exp run`."""
    config = load_sweep(sweep_file, project / params_file)  # every key checked before Ray starts
    project = project.resolve()
    job = _job(config, project)
    for key, value in {**RAY_ENV, **({} if config.ray_address else LOCAL_RAY_ENV)}.items():
        os.environ.setdefault(key, value)
    import ray
    from ray import tune

    from yolopipe.sweep.asha import FinishingAsha, StopRequests
    from yolopipe.sweep.ledger import TrialLedger

    started = time.monotonic()
    if config.ray_address:
        ray.init(address=config.ray_address, include_dashboard=False, log_to_driver=False)
    else:
        cpus = config.max_concurrent * config.cpus_per_trial
        ray.init(address="local", num_cpus=max(1, round(cpus)), include_dashboard=False, log_to_driver=False)
    try:
        board = StopRequests.options(name=STOP_BOARD).remote()
        ledger = TrialLedger(job)
        metric, mode = config.objective
        scheduler = None
        if config.scheduler == "asha":
            scheduler = FinishingAsha(board, max_t=_max_epochs(config, project / params_file),
                                      grace_period=config.grace_period, reduction_factor=config.reduction_factor)
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(run_trial, job=job),
                                {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial}),
            param_space=_space(config),
            tune_config=tune.TuneConfig(metric=metric, mode=mode, search_alg=_searcher(config),
                                        scheduler=scheduler, num_samples=config.num_samples,
                                        max_concurrent_trials=config.max_concurrent, reuse_actors=False),
            run_config=tune.RunConfig(name=config.name, storage_path=str(Path(job.workdir) / "tune"), verbose=1,
                                      failure_config=tune.FailureConfig(max_failures=config.max_failures),
                                      callbacks=[ledger]),
        )
        tuner.fit()  # a failed trial is in the ledger; the sweep goes on without it
        stopped = ray.get(board.all.remote())
        trials = sorted((_outcome(job, trial, metric, stopped) for trial in ledger.ended.values()),
                        key=lambda t: t.experiment)  # before shutdown: a trial's error file needs Ray
    finally:
        ray.shutdown()
    return SweepResult(config, trials, seconds=time.monotonic() - started)


def _job(config: SweepConfig, project: Path) -> TrialJob:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True)
        if done.returncode:
            raise PipelineError(f"git {' '.join(args)} failed: {done.stderr.strip()}", path=project,
                                hint="run the sweep from the root of a git repository with a commit")
        return done.stdout.strip()

    baseline = git("rev-parse", "HEAD")
    if config.git_remote:
        source, cache = git("remote", "get-url", config.git_remote), None
        if git("branch", "-r", "--contains", baseline) == "":
            raise PipelineError(f"HEAD {baseline[:7]} is not on git remote '{config.git_remote}'",
                                hint="git push, so the trials on other machines can clone it")
    else:
        source, cache = str(project), str(project / ".dvc" / "cache")
        dvc_cache = subprocess.run(["dvc", "cache", "dir"], cwd=project, capture_output=True, text=True)
        if dvc_cache.returncode == 0 and dvc_cache.stdout.strip():
            cache = dvc_cache.stdout.strip()
    workdir = config.workdir or project / paths.SCRATCH_DIR / "sweeps" / config.name
    stage_dir = os.environ.get(paths.STAGE_DIR_ENV) or None
    return TrialJob(config.name, source, baseline, cache, str(Path(workdir).resolve()), config.objective[0],
                    max(1, int(config.cpus_per_trial)), stage_dir, judged=config.scheduler == "asha")


def _space(config: SweepConfig) -> dict:
    from ray import tune

    make = {"grid": tune.grid_search, "choice": tune.choice,
            "uniform": lambda v: tune.uniform(*v), "loguniform": lambda v: tune.loguniform(*v)}
    return {key: make[kind](values) for key, spec in config.space.items() for kind, values in spec.items()}


def _searcher(config: SweepConfig):
    metric, mode = config.objective
    if config.searcher == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(metric=metric, mode=mode, seed=config.seed)
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(random_state=config.seed)


def _max_epochs(config: SweepConfig, params_file: Path) -> int:
    from yolopipe.params import load_params

    spec = config.space.get("train.epochs")
    if spec:
        return int(max(next(iter(spec.values()))))
    return load_params(params_file).train.epochs


def _outcome(job: TrialJob, trial, metric: str, stopped: dict) -> TrialOutcome:
    name = experiment_name(job.sweep, trial.trial_id)
    last = trial.last_result or {}
    log = str(trial_dir(job, trial.trial_id) / "log.txt")
    if trial.status == "ERROR" or "experiment" not in last:
        error = _last_line(trial.error_file) if trial.error_file else "ended without an experiment"
        return TrialOutcome(name, dict(trial.config), "failed", log=log, error=error)
    status = "stopped early" if trial.trial_id in stopped and last.get("stopped_early") else "completed"
    return TrialOutcome(name, dict(trial.config), status, last.get(metric), last.get("epochs_completed"), log)


def _last_line(error_file: str) -> str:
    """The exception line of Tune's error file (TrialFailed: dvc exp run exited 1; log: ...)."""
    try:
        lines = [line.strip() for line in Path(error_file).read_text().splitlines() if line.strip()]
    except OSError:
        return f"failed (Tune's error file: {error_file})"
    failed = [line for line in lines if "TrialFailed" in line]
    return (failed or lines or ["failed"])[-1]


def _fmt(params: dict) -> str:
    return ", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in sorted(params.items()))
