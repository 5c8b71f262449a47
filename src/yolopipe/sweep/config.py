"""sweep.yaml: the search space over params.yaml keys, the searcher, ASHA and the Ray settings, checked
against the typed params schema before any trial starts (a typo must not cost a cluster-hour)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from yolopipe.errors import PipelineError
from yolopipe.params import Params, check_params

DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform")
# Per-epoch series dvclive writes under results/train/plots/metrics (see yolopipe.train.EpochLogger).
EPOCH_METRIC = re.compile(r"(train|val|lr)/[\w.-]+")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SweepConfig(_Strict):
    name: str | None = None
    """Prefix of the experiment names (default: the sweep file's name)."""
    space: dict[str, dict[str, Any]] = Field(min_length=1)
    """params.yaml key -> {grid: [...]}, {choice: [...]}, {uniform: [low, high]} or {loguniform: [low, high]}."""
    searcher: Literal["grid", "random", "optuna"] = "random"
    num_samples: int = Field(1, ge=1)
    """Trials to sample (random, optuna); with grid keys, samples per grid point."""
    seed: int | None = 0
    metric: str = "val/mAP50-95"
    """A per-epoch dvclive series (val/mAP50-95, val/mAP50, train/box_loss, lr/pg0, ...): what ASHA compares
    at every epoch, and its value at the last epoch picks the best trial."""
    mode: Literal["max", "min"] = "max"
    scheduler: Literal["asha"] | None = None
    """asha: stop weak trials early (as short experiments); none: every trial runs all its epochs."""
    grace_period: int = Field(1, ge=1)
    """Epochs every trial runs before ASHA may stop it."""
    reduction_factor: float = Field(2.0, gt=1.0)
    """ASHA keeps the best 1/reduction_factor of the trials at each of its rungs."""
    max_concurrent: int = Field(2, ge=1)
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    max_failures: int = Field(0, ge=0)
    """Retries of a trial whose Ray worker died or whose run failed (0: marked failed at once)."""
    ray_address: str | None = None
    """None: a local Ray with max_concurrent * cpus_per_trial CPUs; 'auto' or host:port: a running cluster."""
    git_remote: str | None = None
    """Where trials clone from and push their experiments to (a name from `git remote`, needed with a cluster
    whose nodes do not share this directory); None: this repository, sharing its DVC cache."""
    workdir: Path | None = None
    """Trial workspaces and logs (default .yolopipe/sweeps/<name> in the project)."""

    @model_validator(mode="after")
    def _consistent(self) -> SweepConfig:
        if self.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", self.name):
            raise ValueError("name: letters, digits, - and _ only (it becomes part of git ref names)")
        if not EPOCH_METRIC.fullmatch(self.metric):
            raise ValueError(f"metric '{self.metric}' is not a per-epoch training series; use one of dvclive's "
                             "names under results/train/plots/metrics, e.g. val/mAP50-95 or train/box_loss")
        return self

    @property
    def objective(self) -> tuple[str, str]:
        return self.metric, self.mode


def load_sweep(path: Path, params_path: Path = Path("params.yaml")) -> SweepConfig:
    """Read sweep.yaml and check every key and value of its space against the params schema."""
    if not path.is_file():
        raise PipelineError("sweep file not found", path=path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        config = SweepConfig.model_validate(raw)
    except yaml.YAMLError as exc:
        raise PipelineError(f"not valid YAML: {exc}", path=path) from None
    except ValidationError as exc:
        problems = "\n  ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
                               for e in exc.errors())
        raise PipelineError(f"invalid sweep\n  {problems}", path=path) from None
    if config.name is None:
        config = config.model_copy(update={"name": re.sub(r"[^A-Za-z0-9_-]", "-", path.stem)})
    base = (yaml.safe_load(params_path.read_text()) or {}) if params_path.is_file() else {}
    for key, spec in config.space.items():
        _check_key(key, spec, base, path)
    if config.searcher == "grid" and any(next(iter(s)) != "grid" for s in config.space.values()):
        raise PipelineError("searcher grid takes only {grid: [...]} keys", path=path,
                            hint="use searcher: random (grid keys are crossed with sampled ones) or optuna")
    if config.searcher == "optuna" and any(next(iter(s)) == "grid" for s in config.space.values()):
        raise PipelineError("searcher optuna cannot take {grid: [...]} keys", path=path,
                            hint="use {choice: [...]} for a categorical key")
    return config


def _check_key(key: str, spec: dict, base: dict, path: Path) -> None:
    where = f"space.{key}"
    if len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        raise PipelineError(f"{where}: give exactly one of {', '.join(DISTRIBUTIONS)}, got {sorted(spec)}",
                            path=path)
    kind, values = next(iter(spec.items()))
    if not isinstance(values, list) or not values:
        raise PipelineError(f"{where}.{kind}: expected a list of values", path=path)
    if kind in ("uniform", "loguniform"):
        if len(values) != 2 or not all(isinstance(v, int | float) for v in values) or values[0] >= values[1]:
            raise PipelineError(f"{where}.{kind}: expected [low, high] with low < high, got {values}", path=path)
        if kind == "loguniform" and values[0] <= 0:
            raise PipelineError(f"{where}.loguniform: low must be above 0, got {values[0]}", path=path)
        # the bounds, and a value between them with a fraction: an integer key cannot take a uniform draw
        values = [values[0], values[1], values[0] + (values[1] - values[0]) * 0.37]
    section, _, field = key.partition(".")
    if not field or "." in field:
        raise PipelineError(f"{where}: expected section.key, e.g. train.lr0", path=path)
    for value in values:
        trial = copy.deepcopy(base)
        trial.setdefault(section, {})
        if isinstance(trial[section], dict):
            trial[section][field] = value
        try:
            check_params(trial, path)
        except PipelineError as exc:
            raise PipelineError(f"{where} = {value!r} is not a valid params.yaml value: {exc.message}",
                                path=path, hint=f"the keys and values params.yaml takes are in "
                                                f"{Params.__module__.replace('.', '/')}.py") from None
