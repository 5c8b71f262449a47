"""What a model must show before it gets a version: evaluate metrics in its card, and export parity within
the tolerance params.yaml set at its commit."""

from __future__ import annotations

from dataclasses import dataclass

from yolopipe.errors import PipelineError
from yolopipe.registry.record import CARD, EXPORT_METRICS, ModelRecord

HEADLINE = "mAP50-95"


@dataclass(frozen=True)
class Quality:
    map50_95: float
    dataset_md5: str


def check_promotable(record: ModelRecord, card: dict | None, export_metrics: dict | None) -> Quality:
    """The headline figures of a model that passed; a PipelineError naming the file and key that failed."""
    where = f"at commit {record.short}"
    rerun = "run `dvc repro` (evaluate and export), commit dvc.lock and `dvc push`"
    if card is None:
        raise PipelineError(f"no model card {where}", path=CARD, hint=rerun)
    metrics = card.get("metrics") or {}
    if HEADLINE not in metrics:
        raise PipelineError(f"the model card {where} has no evaluate metrics ({HEADLINE} missing)", path=CARD,
                            hint=rerun)
    if not export_metrics:
        raise PipelineError(f"no export parity metrics {where}", path=EXPORT_METRICS, hint=rerun)
    formats = sorted(key.removesuffix("/mismatched_images") for key in export_metrics
                     if key.endswith("/mismatched_images"))
    if not formats:
        raise PipelineError(f"the export metrics {where} hold no parity figures (<format>/mismatched_images)",
                            path=EXPORT_METRICS, hint=rerun)
    tolerance = record.params.export.max_abs_diff
    for fmt in formats:
        mismatched = export_metrics[f"{fmt}/mismatched_images"]
        diff = export_metrics.get(f"{fmt}/max_abs_diff")
        if diff is None or mismatched > 0 or diff > tolerance:
            shown = "missing" if diff is None else f"{diff:.2e}"
            raise PipelineError(
                f"export parity failed {where}: {fmt} has {mismatched} images with other detections than "
                f"PyTorch and max |diff| {shown} (export.max_abs_diff {tolerance:.0e})", path=EXPORT_METRICS,
                hint="fix the export (see `yolopipe export`), rerun `dvc repro`, and promote that commit")
    return Quality(float(metrics[HEADLINE]), str((card.get("dataset") or {}).get("md5", "unknown")))
