"""SageMaker Training Job entry: SageMaker's /opt/ml contract mapped onto the DVC pipeline.

- `/opt/ml/input/config/hyperparameters.json` (every value a string) -> `dvc exp run -S key=value`, checked
  against the params schema before anything runs;
- `/opt/ml/input/data/<channel>` (default channel `dataset`), when SageMaker mounted one -> `data.root`;
  without it the job runs `dvc pull` first;
- `/opt/ml/checkpoints` -> YOLOPIPE_CHECKPOINT_DIR: training mirrors models/last.pt there after every epoch,
  and a new instance continuing a spot-interrupted job resumes from it (SageMaker syncs it with S3);
- `/opt/ml/model` <- the weights, the exports, the model card, dvc.lock and params.yaml (SageMaker uploads
  it as model.tar.gz); then `dvc push`.

Each path can be moved by environment variables (YOLOPIPE_OPT_ML for the root, SageMaker's SM_MODEL_DIR,
SM_INPUT_CONFIG_DIR, SM_CHANNEL_<NAME>, and YOLOPIPE_CHECKPOINT_DIR), so tests run on a fake tree.
"""

from __future__ import annotations

import copy
import ctypes
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from yolopipe import paths
from yolopipe.errors import PipelineError
from yolopipe.params import check_params

OPT_ML_ENV = "YOLOPIPE_OPT_ML"
SETUP_MARGIN_S = 1800  # MaxRuntimeInSeconds beyond train.max_hours: pull, validate, stage, evaluate, export
SHUTDOWN_GRACE_S = 110  # SageMaker kills the container 120 s after its SIGTERM


def max_runtime_seconds(max_hours: float) -> int:
    """The StoppingCondition.MaxRuntimeInSeconds that fits a job whose training budget is `max_hours`."""
    return math.ceil(max_hours * 3600) + SETUP_MARGIN_S


@dataclass(frozen=True)
class Layout:
    hyperparameters: Path
    dataset: Path
    checkpoints: Path
    model: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str], channel: str = "dataset") -> Layout:
        root = Path(env.get(OPT_ML_ENV, "/opt/ml"))
        config = Path(env.get("SM_INPUT_CONFIG_DIR", root / "input" / "config"))
        return cls(hyperparameters=config / "hyperparameters.json",
                   dataset=Path(env.get(f"SM_CHANNEL_{channel.upper()}", root / "input" / "data" / channel)),
                   checkpoints=Path(env.get(paths.CHECKPOINT_DIR_ENV, root / "checkpoints")),
                   model=Path(env.get("SM_MODEL_DIR", root / "model")))


def read_hyperparameters(path: Path) -> dict[str, str]:
    """SageMaker's hyperparameters.json; none given is an empty mapping."""
    if not path.is_file():
        return {}
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PipelineError(f"not valid JSON: {exc.msg}", path=path, line=exc.lineno) from None
    if not isinstance(values, dict):
        raise PipelineError("expected a JSON object of params.yaml keys, e.g. {\"train.epochs\": \"50\"}", path=path)
    return values


def overrides(hyperparameters: Mapping[str, object], params_file: Path, source: Path,
              dataset: Path | None = None) -> list[str]:
    """`key=value` for `dvc exp run -S`, one per hyperparameter (and data.root for a dataset channel), after
    checking that params.yaml with them applied passes the schema; errors name `source` and the key. Values are
    read with the parser DVC uses for -S (Hydra's override grammar), so the check sees what DVC will write."""
    pairs = []
    for key, value in sorted(hyperparameters.items()):
        if key.startswith("sagemaker_"):  # the SageMaker Python SDK's own entries (sagemaker_region, ...)
            continue
        if "." not in key.strip("."):
            raise PipelineError(f"hyperparameter '{key}' is not a params.yaml key", path=source,
                                hint="name keys section.key, e.g. train.epochs")
        pairs.append(f"{key}={value if isinstance(value, str) else json.dumps(value)}")
    if dataset is not None:
        pairs.append(f"data.root={dataset}")
    merged = copy.deepcopy(yaml.safe_load(params_file.read_text()) or {})
    for pair in pairs:
        section, name = pair.split("=", 1)[0].split(".", 1)
        if not isinstance(merged.setdefault(section, {}), dict):
            raise PipelineError(f"hyperparameter '{section}.{name}': {section} is not a section", path=source)
        merged[section][name] = _override_value(pair, source)
    check_params(merged, source)
    return pairs


def _override_value(pair: str, source: Path) -> object:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        override = OverridesParser.create().parse_override(pair)
    except OverrideParseException as exc:
        raise PipelineError(f"hyperparameter '{pair}' is not a value `dvc exp run -S` accepts: {exc}",
                            path=source) from None
    if override.is_sweep_override():  # `0,1` or range(...): DVC would queue several experiments
        raise PipelineError(f"hyperparameter '{pair}' is a sweep for `dvc exp run -S`; a job runs one value",
                            path=source, hint="write a list in brackets: [0, 1]")
    return override.value()


@dataclass(frozen=True)
class JobResult:
    exit_code: int
    published: list[Path]


def run_job(project: Path, layout: Layout, remote: str | None = None, push: bool = True) -> JobResult:
    """Run the pipeline as one SageMaker job; SIGTERM (a spot interruption) stops training resumably."""
    dataset = layout.dataset if layout.dataset.is_dir() else None
    sets = overrides(read_hyperparameters(layout.hyperparameters), project / "params.yaml",
                     layout.hyperparameters, dataset)
    layout.checkpoints.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, paths.CHECKPOINT_DIR_ENV: str(layout.checkpoints), **_job_identity(project)}
    remote_args = ["--remote", remote] if remote else []
    _say(f"checkpoints mirrored in {layout.checkpoints}; "
         + (f"dataset from channel {dataset}" if dataset else "dataset from the DVC remote"))
    commands = [] if dataset else [["dvc", "pull", "--allow-missing", *remote_args]]
    commands.append(["dvc", "exp", "run", *(arg for pair in sets for arg in ("-S", pair))])
    runner = SignalForwarder()
    for command in commands:
        _say(" ".join(command))
        code = runner.run(command, project, env)
        if code:
            return JobResult(code, [])
    published = publish(project, layout.model)
    _say(f"wrote {', '.join(p.name for p in published)} to {layout.model}")
    if push:
        _say(" ".join(["dvc", "push", *remote_args]))
        return JobResult(runner.run(["dvc", "push", *remote_args], project, env), published)
    return JobResult(0, published)


def publish(project: Path, model_dir: Path) -> list[Path]:
    """Copy the weights, what the export stage writes under models/ (exports, card), dvc.lock and params.yaml
    into `model_dir`: the lock and params say which data and settings produced them."""
    outs = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]["export"]["outs"]
    names = [out if isinstance(out, str) else next(iter(out)) for out in outs]
    files = [paths.BEST_WEIGHTS, *(Path(n) for n in names if Path(n).parent == paths.MODELS_DIR),
             Path("dvc.lock"), Path("params.yaml")]
    model_dir.mkdir(parents=True, exist_ok=True)
    published = []
    for name in files:
        if not (project / name).is_file():
            raise PipelineError(f"{name} is missing after the pipeline ran", path=project / name)
        published.append(Path(shutil.copy2(project / name, model_dir / name.name)))
    return published


def _job_identity(project: Path) -> dict[str, str]:
    """`dvc exp run` commits the experiment, and a fresh container has no git identity: name the job, unless the
    repository or the image configures one."""
    configured = subprocess.run(["git", "config", "user.email"], cwd=project, capture_output=True, text=True)
    if configured.returncode == 0 and configured.stdout.strip():
        return {}
    return {f"GIT_{role}_{field}": value for role in ("AUTHOR", "COMMITTER")
            for field, value in (("NAME", "yolopipe sagemaker job"), ("EMAIL", "yolopipe@localhost"))}


class SignalForwarder:
    """Runs a command in its own process group and passes SIGTERM/SIGINT to the whole group, so `yolopipe
    train` under `dvc exp run` gets the spot notice; then waits until every process of the group is gone, so
    the checkpoint is saved before the job exits."""

    def __init__(self) -> None:
        self.signum: int | None = None
        _become_subreaper()

    def run(self, command: list[str], cwd: Path, env: Mapping[str, str]) -> int:
        if self.signum is not None:
            return 128 + self.signum
        process = subprocess.Popen(command, cwd=cwd, env=dict(env), start_new_session=True)

        def forward(signum: int, frame) -> None:
            self.signum = signum
            try:
                os.killpg(process.pid, signum)
            except ProcessLookupError:
                pass

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            code = process.wait()
            _wait_for_group(process.pid, time.monotonic() + SHUTDOWN_GRACE_S)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 128 + self.signum if self.signum is not None else code


def _wait_for_group(pgid: int, deadline: float) -> None:
    """DVC dies at once on SIGTERM; the training it started finishes its batch and saves, orphaned."""
    while time.monotonic() < deadline:
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:  # reap the orphans we inherited as their subreaper
                pass
        except ChildProcessError:
            pass
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)


def _become_subreaper() -> None:
    """Orphaned grandchildren come to us, not to PID 1, so _wait_for_group can reap them (Linux only)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _say(text: str) -> None:
    print(f"yolopipe box sagemaker: {text}", flush=True)
