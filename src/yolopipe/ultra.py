"""The one thin adapter around Ultralytics' global state.

Ultralytics keeps settings in a per-user file, switches integrations on by itself (its DVC callback
rewrites our dvc.yaml), downloads fonts, weights and pip packages, and sends analytics. Every stage
imports Ultralytics through `load_ultralytics`, which points it at a pipeline-owned config directory
and turns all of that off before the first import.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import ModuleType

# Where Ultralytics keeps settings.json and fonts for this pipeline (git-ignored, not the user's ~/.config).
DEFAULT_CONFIG_DIR = Path(".yolopipe/ultralytics")

_QUIET_SETTINGS = {
    "sync": False,  # analytics events
    "clearml": False, "comet": False, "dvc": False, "mlflow": False, "raytune": False,
    "tensorboard": False, "wandb": False,
    "vscode_msg": False, "openvino_msg": False,
}


def load_ultralytics(config_dir: Path = DEFAULT_CONFIG_DIR) -> ModuleType:
    """Import ultralytics configured for an offline run that writes nothing outside our directories."""
    config_dir = config_dir.resolve()
    config_dir.mkdir(parents=True, exist_ok=True)
    # These are read once, at Ultralytics' import time.
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ["YOLO_OFFLINE"] = "true"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    import ultralytics
    from ultralytics.engine import trainer
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    _install_fonts(USER_CONFIG_DIR)  # where check_font() looks before it downloads
    SETTINGS.update({
        **_QUIET_SETTINGS,
        "datasets_dir": str(config_dir / "datasets"),
        "weights_dir": str(config_dir / "weights"),
        "runs_dir": str(config_dir / "runs"),
    })
    # The stock AMP check downloads yolo26n.pt on every CUDA run; check with the weights we have instead.
    trainer.check_amp = _offline_check_amp(trainer.check_amp, config_dir / "weights")
    return ultralytics


def patch_ddp_rank() -> None:
    """In a DDP rank (a fresh interpreter that inherited our environment, so Ultralytics already reads our
    settings): the offline AMP check again. The settings file is left alone: the ranks start at once, and a
    rank writing it while another reads it would make Ultralytics reset it to its defaults."""
    from ultralytics.engine import trainer

    if not getattr(trainer.check_amp, "yolopipe_offline", False):
        weights_dir = Path(os.environ["YOLO_CONFIG_DIR"]) / "weights"
        trainer.check_amp = _offline_check_amp(trainer.check_amp, weights_dir)


def _install_fonts(font_dir: Path) -> None:
    """Give Ultralytics' plotting the fonts it would otherwise fetch from github.com."""
    import matplotlib

    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = font_dir / name
        if not target.exists():
            shutil.copyfile(dejavu, target)


def _offline_check_amp(stock_check, weights_dir: Path):
    def check_amp(model) -> bool:
        from ultralytics.utils import LOGGER

        on_cuda = next(model.parameters()).device.type == "cuda"
        if on_cuda and not (weights_dir / "yolo26n.pt").is_file():
            LOGGER.info("AMP: check skipped (offline, no local yolo26n.pt); training with amp=True")
            return True
        return stock_check(model)

    check_amp.yolopipe_offline = True
    return check_amp
