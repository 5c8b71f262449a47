"""The Ultralytics adapter, checked in a fresh interpreter (Ultralytics reads its settings once, at import)."""

import json
import sys

from conftest import run

PROBE = """
import json, sys
from pathlib import Path
from yolopipe.ultra import load_ultralytics
load_ultralytics(Path("cfg"))
from ultralytics.utils import SETTINGS, USER_CONFIG_DIR
from ultralytics.utils.checks import check_font
print(json.dumps({
    "fonts": [str(check_font("Arial.ttf")), str(check_font("Arial.Unicode.ttf"))],
    "config_dir": str(USER_CONFIG_DIR),
    "settings": {k: SETTINGS[k] for k in ("sync", "dvc", "mlflow", "clearml", "comet", "wandb", "tensorboard")},
}))
"""


def test_fonts_settings_and_no_network(netguard_env, tmp_path):
    env, log = netguard_env
    result = run([sys.executable, "-c", PROBE], tmp_path, env)
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    # check_font() finds the bundled fonts where it looks first, so it never reaches for github.com.
    assert facts["fonts"] == [str(tmp_path / "cfg" / "Ultralytics" / name) for name in
                              ("Arial.ttf", "Arial.Unicode.ttf")]
    assert facts["config_dir"] == str(tmp_path / "cfg" / "Ultralytics")
    # No analytics, and none of the built-in integrations (the DVC one rewrites dvc.yaml).
    assert not any(facts["settings"].values())
    assert log.read_text() == ""
