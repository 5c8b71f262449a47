"""The model card: what a deployer needs to know about the weights next to it, in one JSON file.

It is a cached DVC output, so it must be the same bytes whenever the same inputs are reproduced: no
dates, no latencies, and no git revision (that would change with every commit, and a fresh clone's
`dvc repro` would then write a different card). The card names the weights' md5, the same one dvc.lock
records, which leads to the commit: `git log -S <md5> -- dvc.lock`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from yolopipe.dataset import load_dataset
from yolopipe.dvchashes import dataset_md5, file_md5
from yolopipe.export.parity import output_shapes
from yolopipe.params import ExportParams


@dataclass(frozen=True)
class ExportRun:
    """What one run of the export stage made, and from what: everything the card describes."""

    weights: Path
    data_yaml: Path
    split: str
    """The held-out split the parity check and the evaluate metrics used."""
    imgsz: int
    params: ExportParams
    exported: dict[str, Path]
    """Format -> exported file."""
    parity: dict[str, dict]
    """Format -> compare_export's figures."""
    evaluation: Path | None
    """The evaluate stage's metrics.json."""


def write_model_card(path: Path, run: ExportRun) -> Path:
    """Write the card for `run.weights` and its exports to `path`."""
    weights, imgsz, params, parity = run.weights, run.imgsz, run.params, run.parity
    input_shape, output_shape = output_shapes(weights, imgsz)
    names = list(load_dataset(run.data_yaml).names)
    card = {
        "model": {"file": weights.name, "md5": file_md5(weights), "task": "detect", "imgsz": imgsz},
        "classes": dict(enumerate(names)),
        "input": {"shape": input_shape, "dtype": "float32",
                  "layout": "NCHW, RGB scaled to [0, 1], letterboxed to imgsz with grey (114) padding"},
        "output": {"shape": output_shape,
                   "layout": f"per candidate box: centre x, centre y, width, height in input pixels, then "
                             f"{len(names)} class scores; apply NMS (Ultralytics used conf 0.25, iou 0.7)"},
        "exports": {fmt: {"file": file.name, "md5": file_md5(file) if file.is_file() else None,
                          **dict(zip(("input_shape", "output_shape"), output_shapes(file, imgsz), strict=True)),
                          "half": params.half, "dynamic": params.dynamic,
                          "max_abs_diff": parity[fmt]["max_abs_diff"],
                          "parity_images": parity[fmt]["images"], "tolerance": params.max_abs_diff}
                    for fmt, file in run.exported.items()},
        "dataset": {"md5": dataset_md5(run.data_yaml.parent), "held_out_split": run.split},
        "metrics": _quality_metrics(run.evaluation),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(card, indent=2) + "\n")
    return path


def _quality_metrics(evaluation: Path | None) -> dict:
    """The evaluate stage's figures without its timings, which vary from run to run."""
    if evaluation is None or not evaluation.is_file():
        return {}
    return {k: v for k, v in json.loads(evaluation.read_text()).items() if not k.startswith("speed/")}
