"""report: compare a baseline with its variants (commits, branches or `dvc exp` experiments) in markdown.

Everything is read through DVC's own interfaces (`dvc.api.exp_show`, `dvc.api.params_show`,
`dvc metrics diff --json`, `dvc plots diff --json`), so a revision is whatever DVC resolves: a commit, a
branch, a tag, an experiment name or `workspace`. Charts are PNGs drawn offline by `compare_charts`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from yolopipe import paths
from yolopipe.errors import PipelineError
from yolopipe.registry import StageModel

WORKSPACE = "workspace"
EVALUATE_METRICS = (paths.EVALUATE_DIR / "metrics.json").as_posix()
SUMMARY_METRICS = ("mAP50-95", "mAP50", "precision", "recall")  # first in the table; any others follow


@dataclass
class Comparison:
    """Params, metrics and plot rows of `revs`; deltas are against `revs[0]` when `has_base`."""

    revs: list[str]
    has_base: bool
    params: dict[str, dict[str, object]] = field(default_factory=dict)  # "train.lr0" -> rev -> value
    metrics: dict[str, dict[str, dict[str, object]]] = field(default_factory=dict)  # file -> key -> rev -> value
    plots: dict[str, list[dict]] = field(default_factory=dict)  # plot file -> rows, each with a "rev"
    errors: list[str] = field(default_factory=list)
    registry_stage: str | None = None  # the registry stage shown beside the revisions (prod), None: not shown
    deployed: StageModel | None = None  # the model in that stage, None when the stage is empty
    deployed_problem: str | None = None  # why the model in that stage could not be read

    @property
    def differing_params(self) -> dict[str, dict[str, object]]:
        return {key: values for key, values in sorted(self.params.items())
                if len({json.dumps(values.get(rev), sort_keys=True) for rev in self.revs}) > 1}


@dataclass(frozen=True)
class ReportResult:
    path: Path
    revs: list[str]
    charts: dict[str, Path]
    has_base: bool

    @property
    def summary(self) -> str:
        compared = " vs ".join(self.revs) if self.has_base else f"{self.revs[0]} alone (no baseline)"
        return f"compared {compared}: {len(self.charts)} charts -> {self.path}"


def write_report(base: str | None, exps: list[str], out: Path, repo: Path = Path("."),
                 registry_stage: str | None = "prod") -> ReportResult:
    """Compare `base` with `exps` and write the markdown to `out`, its PNG charts beside it; with
    `registry_stage`, the model the registry has in that stage is shown beside them."""
    from yolopipe.report.charts import draw_charts

    revs, has_base = resolve_revs(base, exps, repo)
    comparison = collect(revs, has_base, repo)
    if registry_stage:
        _collect_deployed(comparison, registry_stage, repo)
    charts = draw_charts(comparison.plots, revs, out.parent / f"{out.stem}_charts")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_markdown(comparison, charts, out))
    return ReportResult(out, revs, charts, has_base)


def resolve_revs(base: str | None, exps: list[str], repo: Path) -> tuple[list[str], bool]:
    """The revisions to compare, baseline first, and whether there is a baseline.

    No `exps`: the experiments `dvc exp show` lists for `base`, or the workspace when there is no base.
    """
    if not exps and base is not None:
        exps = experiments_of(base, repo)
    if not exps and base is None:
        exps = [WORKSPACE]
    revs = ([base] if base is not None else []) + [rev for rev in exps if rev != base]
    return list(dict.fromkeys(revs)), base is not None and len(revs) > 1


def experiments_of(base: str, repo: Path) -> list[str]:
    """Names of the `dvc exp` experiments derived from the commit `base`, oldest first."""
    import dvc.api

    rows = dvc.api.exp_show(repo=str(repo), revs=[base])
    names = [row.get("Experiment") or row.get("rev") for row in rows if row.get("typ") in ("branch_commit",
                                                                                         "branch_base")]
    return [name for name in reversed(names) if name]


def collect(revs: list[str], has_base: bool, repo: Path) -> Comparison:
    """Read params, metrics and plots of every revision through DVC."""
    comparison = Comparison(revs, has_base)
    _collect_params(comparison, repo)
    _collect_metrics(comparison, repo)
    _collect_plots(comparison, repo)
    return comparison


def _collect_deployed(comparison: Comparison, stage: str, repo: Path) -> None:
    from yolopipe.registry import stage_model

    comparison.registry_stage = stage
    try:
        comparison.deployed = stage_model(str(repo), stage)
    except Exception as exc:  # noqa: BLE001 - the comparison is still worth posting
        comparison.deployed_problem = str(exc)
        comparison.errors.append(f"registry stage `{stage}`: {exc}")


def _collect_params(comparison: Comparison, repo: Path) -> None:
    import dvc.api

    for rev in comparison.revs:
        try:
            shown = dvc.api.params_show(repo=str(repo), rev=None if rev == WORKSPACE else rev)
        except Exception as exc:  # noqa: BLE001 - a revision without params is reported, not fatal
            comparison.errors.append(f"params of `{rev}`: {exc}")
            continue
        for key, value in _flatten(shown).items():
            comparison.params.setdefault(key, {})[rev] = value


def _collect_metrics(comparison: Comparison, repo: Path) -> None:
    revs = comparison.revs
    if len(revs) == 1:
        from dvc.repo import Repo

        # Nothing to diff against: the one revision's values, per file as `dvc metrics show` reads them.
        with Repo(str(repo)) as dvc_repo:
            shown = dvc_repo.metrics.show(revs=None if revs[0] == WORKSPACE else [revs[0]])
        for rev_data in shown.values():
            for name, entry in rev_data.get("data", {}).items():
                for key, value in _flatten(entry.get("data", {})).items():
                    comparison.metrics.setdefault(name, {}).setdefault(key, {})[revs[0]] = value
        return
    base = revs[0]
    for rev in revs[1:]:
        diff = _dvc_json(["metrics", "diff", "--json", "--all", base, rev], repo)
        for name, keys in diff.items():  # `dvc metrics diff --json`: file -> key -> {old, new, diff}
            for key, change in keys.items():
                values = comparison.metrics.setdefault(name, {}).setdefault(key, {})
                values.setdefault(base, change.get("old"))
                values[rev] = change.get("new")


def _collect_plots(comparison: Comparison, repo: Path) -> None:
    revs = comparison.revs
    # `dvc plots diff` with one revision would compare it with the workspace: name the revision twice.
    args = revs if len(revs) > 1 else revs * 2
    from yolopipe.report.charts import EVALUATE_PLOTS, TRAIN_PLOTS

    with tempfile.TemporaryDirectory() as images:  # image plots are copied to -o; keep them out of the repo
        shown = _dvc_json(["plots", "diff", "--json", "--split", "-o", images, "--targets", TRAIN_PLOTS,
                           EVALUATE_PLOTS, "--", *args], repo)
    for plot_id, renders in shown.get("data", {}).items():
        for render in renders:
            rows = render.get("anchor_definitions", {}).get("<DVC_METRIC_DATA>", [])
            comparison.plots.setdefault(plot_id, []).extend(rows)
    for error in shown.get("errors", []) or []:
        comparison.errors.append(f"plots: {error}")


def _dvc_json(args: list[str], repo: Path) -> dict:
    """Run `dvc ARGS` in `repo` and parse its --json output."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise PipelineError(f"`dvc {' '.join(args)}` failed: {result.stderr.strip()[-2000:]}",
                            hint="check that every revision exists: `git branch -a`, `dvc exp list`")
    return json.loads(result.stdout or "{}")


def _flatten(data, prefix: str = "") -> dict[str, object]:
    """{"train": {"lr0": 0.01}} -> {"train.lr0": 0.01}; file names are dropped from params_show's output."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, object] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def render_markdown(comparison: Comparison, charts: dict[str, Path], out: Path) -> str:
    """The report: revisions, params that differ, evaluation metrics with deltas, the other metrics, charts."""
    revs, base = comparison.revs, comparison.revs[0]
    lines = ["# Experiment comparison", ""]
    if comparison.has_base:
        lines += [f"Baseline `{base}` compared with " + ", ".join(f"`{rev}`" for rev in revs[1:])
                  + "; deltas are against the baseline.", ""]
    else:
        lines += [f"Only one revision, `{revs[0]}`: no baseline to compare with, so no deltas. "
                  "Pass `--base REV` (a commit, branch or experiment) to compare.", ""]

    lines += ["## Params that differ", ""]
    differing = comparison.differing_params
    if not comparison.has_base:
        lines += ["Not applicable: one revision.", ""]
    elif not differing:
        lines += ["None: every revision has the same params.", ""]
    else:
        lines += _table(["param", *revs], [[f"`{key}`", *(_cell(values.get(rev)) for rev in revs)]
                                           for key, values in differing.items()])

    evaluation = comparison.metrics.get(EVALUATE_METRICS, {})
    summary = [key for key in SUMMARY_METRICS if key in evaluation]
    summary += sorted(key for key in evaluation if key not in summary and not _is_per_class(key))
    per_class = sorted(key for key in evaluation if _is_per_class(key))
    lines += ["## Metrics", "", f"From `{EVALUATE_METRICS}`.", ""]
    lines += _metric_table(comparison, evaluation, summary) if summary else ["No evaluation metrics.", ""]
    if per_class:
        lines += ["### Per-class AP", ""] + _metric_table(comparison, evaluation, per_class)
    if comparison.registry_stage:
        lines += _deployed_section(comparison, evaluation)
    others = [(name, key) for name, keys in sorted(comparison.metrics.items()) if name != EVALUATE_METRICS
              for key in sorted(keys)]
    if others:
        lines += ["<details><summary>All other metrics</summary>", ""]
        for name in dict.fromkeys(name for name, _ in others):
            lines += [f"`{name}`", ""] + _metric_table(comparison, comparison.metrics[name],
                                                         [key for n, key in others if n == name])
        lines += ["</details>", ""]

    lines += ["## Charts", ""]
    if not charts:
        lines += ["No plot data in these revisions.", ""]
    for title, path in charts.items():
        lines += [f"### {title}", "", f"![{title}]({os.path.relpath(path, out.parent)})", ""]
    if comparison.errors:
        lines += ["## Problems", ""] + [f"- {error}" for error in comparison.errors] + [""]
    return "\n".join(lines)


def _deployed_section(comparison: Comparison, evaluation: dict) -> list[str]:
    """The model in the registry stage (prod) beside the revisions: what merging would be measured against."""
    stage, model, revs = comparison.registry_stage, comparison.deployed, comparison.revs
    lines = [f"## The `{stage}` model", ""]
    if comparison.deployed_problem:
        return lines + ["Could not be read (see Problems below).", ""]
    if model is None:
        return lines + [f"None: no model is in stage `{stage}` of the registry "
                        f"(`yolopipe promote --stage {stage}` puts one there).", ""]
    lines += [f"`{stage}` is yolo-detector {model.version} (commit `{model.commit[:7]}`); its figures come from "
              "its model card.", ""]
    rows = []
    for key in [key for key in SUMMARY_METRICS if key in model.metrics or key in evaluation]:
        values = evaluation.get(key, {})
        rows.append([f"`{key}`", *(_cell(values.get(rev)) for rev in revs), _cell(model.metrics.get(key)),
                     _delta(model.metrics.get(key), values.get(revs[-1]))])
    return lines + _table(["metric", *revs, stage, f"Δ {revs[-1]} vs {stage}"], rows)


def _is_per_class(key: str) -> bool:
    # Per-class entries are nested ("per_class.circle.AP50") or qualified ("AP50/circle"); totals are plain.
    return "." in key or "/" in key


def _metric_table(comparison: Comparison, values_by_key: dict, keys: list[str]) -> list[str]:
    revs, base = comparison.revs, comparison.revs[0]
    deltas = revs[1:] if comparison.has_base else []
    header = ["metric", *revs, *(f"Δ {rev}" for rev in deltas)]
    rows = []
    for key in keys:
        values = values_by_key.get(key, {})
        rows.append([f"`{key}`", *(_cell(values.get(rev)) for rev in revs),
                     *(_delta(values.get(base), values.get(rev)) for rev in deltas)])
    return _table(header, rows)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return f"`{json.dumps(value)}`" if isinstance(value, (list, dict)) else str(value)


def _delta(old, new) -> str:
    if not _is_number(old) or not _is_number(new):
        return "—"
    delta = new - old
    return "0" if delta == 0 else f"{delta:+.4g}"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
