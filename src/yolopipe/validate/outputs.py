"""The files `validate` leaves for DVC: report.json (everything: findings, counts per split and class),
metrics.json (validate.passed, for `dvc metrics` and `dvc exp show`) and class_histogram.csv (for
`dvc plots`, e.g. the bar_horizontal template).

All three are deterministic for the same dataset: no timestamps, no absolute paths, sorted keys and
findings, because DVC hashes them and a diff should mean the data changed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from yolopipe.findings import Finding


def write_outputs(out_dir: Path, report: dict, names: tuple[str, ...]) -> Path:
    """Write the three files into `out_dir` and return the report's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / "report.json"
    report_path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    (out_dir / "metrics.json").write_text(json.dumps(report_metrics(report), indent=2) + "\n")
    with open(out_dir / "class_histogram.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["split", "class", "instances"])
        for split, stats in report["splits"].items():
            for name in names:
                writer.writerow([split, name, stats["instances_per_class"].get(name, 0)])
    return report_path


def build_report(passed: bool, dataset: dict, policy: dict, counts: dict, splits: dict,
                 findings: list[Finding]) -> dict:
    return {"passed": passed, "dataset": dataset, "policy": policy, "counts": counts, "splits": splits,
            "findings": [f.as_dict() for f in findings]}


def report_metrics(report: dict) -> dict[str, dict[str, int]]:
    """One column for `dvc exp show`, `validate.passed`: the counts are the same in every experiment of a
    dataset, so they stay in report.json (and the class histogram) instead of crowding the model's metrics."""
    return {"validate": {"passed": int(report["passed"])}}
