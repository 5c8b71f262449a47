"""Checkpoints and arguments without what ties them to one machine or one moment, and plain metric names."""

from __future__ import annotations

from pathlib import Path

from yolopipe.train.resume import STAMP_KEY


def save_portable_checkpoint(source: Path, target: Path, stamp: dict | None = None) -> None:
    """Copy an Ultralytics checkpoint without its save date, git state, wall-clock epoch times and absolute
    paths, so the same training on the same hardware gives byte-identical weights and dvc.lock does not
    change on a rerun. (Provenance lives in git and dvc.lock.) `stamp` is stored under STAMP_KEY."""
    import torch

    checkpoint = torch.load(source, map_location="cpu", weights_only=False)
    checkpoint.pop("date", None)
    checkpoint.pop("git", None)
    if isinstance(checkpoint.get("train_results"), dict):
        checkpoint["train_results"].pop("time", None)
    if isinstance(checkpoint.get("train_args"), dict):
        checkpoint["train_args"] = portable_args(checkpoint["train_args"])
    for key in ("model", "ema"):  # the model objects carry their own copy of the arguments
        model = checkpoint.get(key)
        if isinstance(getattr(model, "args", None), dict):
            model.args = portable_args(model.args)
    if stamp is not None:
        checkpoint[STAMP_KEY] = stamp
    # torch.save names the archive after the file, so write under the final name, then rename atomically.
    partial = target.parent / ".partial" / target.name
    partial.parent.mkdir(exist_ok=True)
    torch.save(checkpoint, partial)
    partial.replace(target)
    partial.parent.rmdir()


def portable_args(args: dict) -> dict:
    """Ultralytics' effective arguments with paths relative to the working directory."""
    cwd = Path.cwd()
    portable = {}
    for key, value in args.items():
        if isinstance(value, Path):
            value = str(value)
        if isinstance(value, str) and Path(value).is_absolute() and Path(value).is_relative_to(cwd):
            value = Path(value).relative_to(cwd).as_posix()
        portable[key] = value
    return portable


def epoch_metrics(trainer) -> dict[str, float]:
    """Ultralytics' per-epoch figures under plain names: val/mAP50 rather than metrics/mAP50(B)."""
    raw = {**trainer.label_loss_items(trainer.tloss, prefix="train"), **trainer.metrics, **trainer.lr}
    return {key.replace("metrics/", "val/").replace("(B)", ""): float(value) for key, value in raw.items()}
