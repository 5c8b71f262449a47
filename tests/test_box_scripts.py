"""The shell scripts for GPU boxes: shellcheck-clean, and the GPU check refuses clearly where there is no GPU."""

import shutil
import subprocess
import sys

import pytest

from conftest import REPO, run

SCRIPTS = ["scripts/bootstrap.sh", "scripts/docker-entrypoint.sh", "bench/gpu_check.sh"]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="no shellcheck (apt-get install shellcheck)")
def test_scripts_are_shellcheck_clean():
    run(["shellcheck", *SCRIPTS], REPO)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU machine: run bench/gpu_check.sh itself")
def test_gpu_check_says_there_is_no_gpu_and_does_nothing(tmp_path):
    work = tmp_path / "work"
    result = subprocess.run(["bash", "bench/gpu_check.sh", str(work)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == "gpu_check: no nvidia-smi: this check needs an NVIDIA GPU and its driver (none here)\n"
    assert not work.exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse(script):
    """bash -n: a syntax check for the parts no test runs here (gpu_check.sh beyond its no-GPU exit)."""
    run(["bash", "-n", script], REPO)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU machine: run bench/gpu_check.sh itself")
def test_ddp_check_skips_with_fewer_than_two_gpus(tmp_path):
    result = run([sys.executable, "bench/ddp_check.py", str(tmp_path / "data"), str(tmp_path / "work")], REPO)
    assert result.stdout.startswith("ddp_check: skipped: 0 GPU(s) visible")
    assert not (tmp_path / "work").exists()
