"""PNG charts for `yolopipe report`: the compared runs' curves overlaid, drawn offline by matplotlib (Agg).

The rows come from `dvc plots diff --json --split`: one dict per point, with the revision under "rev"; dvclive
names each column after its file (val/mAP50.tsv -> mAP50). Same rows in, same bytes out: no timestamps,
bundled fonts only.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from yolopipe import paths

TRAIN_PLOTS = (paths.TRAIN_DIR / "plots" / "metrics").as_posix()
EVALUATE_PLOTS = (paths.EVALUATE_DIR / "plots").as_posix()
# Training curves worth overlaying: the losses and the mAPs per epoch (not the learning-rate schedule).
CURVE_WORDS = ("loss", "mAP")


def draw_charts(plots: dict[str, list[dict]], revs: list[str], out_dir: Path) -> dict[str, Path]:
    """Write training_curves.png and pr_curve.png into `out_dir` when their data exist; title -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = {}
    curves = {plot_id: rows for plot_id, rows in sorted(plots.items())
              if plot_id.startswith(TRAIN_PLOTS) and any(word in plot_id for word in CURVE_WORDS)}
    if curves:
        charts["Training curves"] = _draw_training(curves, revs, out_dir / "training_curves.png")
    # The PR curve is whichever evaluate plot has recall/precision rows (pr_curve.json or per-class pr_curves.json).
    pr = next((rows for plot_id, rows in sorted(plots.items()) if plot_id.startswith(EVALUATE_PLOTS)
               and rows and {"recall", "precision"} <= set(rows[0])), None)
    if pr:
        charts["Precision-recall curve"] = _draw_pr(pr, revs, out_dir / "pr_curve.png")
    return charts


def _draw_training(curves: dict[str, list[dict]], revs: list[str], path: Path) -> Path:
    plt = _pyplot()
    columns = min(3, len(curves))
    rows = math.ceil(len(curves) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, (plot_id, points) in zip(axes.flat, curves.items(), strict=False):
        field = Path(plot_id).stem  # dvclive names the column after the file: val/mAP50.tsv -> mAP50
        for index, rev in enumerate(revs):
            xy = sorted((_number(p.get("step")), _number(p.get(field))) for p in points if p.get("rev") == rev)
            xy = [(x, y) for x, y in xy if x is not None and y is not None]
            if xy:
                ax.plot(*zip(*xy, strict=True), marker="o", markersize=3, label=rev, color=_color(index))
        ax.set_title(plot_id.removeprefix(TRAIN_PLOTS + "/").removesuffix(".tsv"), fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(curves):]:
        ax.set_visible(False)
    _legend(figure, axes.flat[0])
    return _save(figure, path)


def _draw_pr(points: list[dict], revs: list[str], path: Path) -> Path:
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(5.5, 4.5))
    # Rows with a "class" are per-class curves; the mean curve (no class, or class "all") is what the runs are
    # compared on, and per-class curves are drawn dashed only when a run has no mean curve.
    for index, rev in enumerate(revs):
        mine = [p for p in points if p.get("rev") == rev]
        by_class: dict[object, list] = defaultdict(list)
        for p in mine:
            name = None if p.get("class") in (None, "all") else p["class"]
            by_class[name].append((_number(p.get("recall")), _number(p.get("precision"))))
        groups = {None: by_class[None]} if by_class.get(None) else dict(by_class)
        for name, xy in sorted(groups.items(), key=lambda item: str(item[0])):
            xy = sorted((x, y) for x, y in xy if x is not None and y is not None)
            if xy:
                label = rev if name is None else f"{rev} {name}"
                ax.plot(*zip(*xy, strict=True), label=label, color=_color(index),
                        linestyle="-" if name is None else "--")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(figure, path)


def _number(value) -> float | None:
    try:
        number = float(value)  # TSV values arrive as strings
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _color(index: int) -> str:
    return f"C{index % 10}"


def _legend(figure, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="upper center", ncol=min(len(labels), 4), fontsize=9)
        figure.tight_layout(rect=(0, 0, 1, 0.93))
    else:
        figure.tight_layout()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display, no browser, no CDN
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.family": "DejaVu Sans", "svg.hashsalt": "yolopipe", "figure.dpi": 100})
    return plt


def _save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    # No "Software" stamp: the same data give byte-identical PNGs whatever the matplotlib version.
    figure.savefig(path, format="png", metadata={"Software": None})
    plt.close(figure)
    return path
