"""The Dockerfile stays in step with the Makefile's install and requirements.lock. CI has no registry to pull a
base image from (and this machine has no Docker daemon), so the image is not built here: these checks are what
keeps a build from drifting."""

import fnmatch
import re
import shlex
import subprocess

from conftest import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()
IMAGE_VENV = "/opt/venv"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def pip_installs(commands: str, python: str) -> list[list[str]]:
    """The arguments of every `<python> -m pip install ...` in a shell text (&& chains included)."""
    found = []
    for part in re.split(r"&&|\n", commands):
        words = shlex.split(part)
        if words[:4] == [python, "-m", "pip", "install"]:
            found.append(words[4:])
    return found


def makefile_recipe(target: str) -> str:
    lines = (REPO / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return "\n".join(recipe)


def test_image_installs_the_lock_with_the_makefiles_exact_commands():
    make = pip_installs(makefile_recipe("$(INSTALLED)"), "$(VENV)/bin/python")
    runs = "\n".join(args for name, args in instructions(DOCKERFILE) if name == "RUN")
    image = pip_installs(runs, f"{IMAGE_VENV}/bin/python")
    assert len(make) == 2 and image == make  # the lock, then the project itself without dependencies
    assert ["-r", "requirements.lock"] == make[0][-2:]
    assert f"touch {IMAGE_VENV}/.installed" in runs  # `make` inside the image finds the venv up to date
    assert ("ENV", f"VIRTUAL_ENV={IMAGE_VENV} PATH={IMAGE_VENV}/bin:$PATH PIP_NO_CACHE_DIR=1") in instructions(
        DOCKERFILE)


def test_base_image_has_the_python_the_lock_was_resolved_with():
    locked = re.search(r"with Python (\d+\.\d+\.\d+)", (REPO / "requirements.lock").read_text().splitlines()[0])
    base = next(args for name, args in instructions(DOCKERFILE) if name == "FROM")
    assert base == f"python:{locked.group(1)}-slim-bookworm"


def test_lock_is_copied_before_the_code_and_offline_at_run_time():
    steps = instructions(DOCKERFILE)
    copies = [args for name, args in steps if name == "COPY"]
    assert copies == ["requirements.lock ./", ". ."]  # the wheels' layer survives code changes
    env = " ".join(args for name, args in steps if name == "ENV")
    assert "PIP_NO_INDEX=1" in env and "YOLO_OFFLINE=true" in env
    entry = next(args for name, args in steps if name == "ENTRYPOINT")
    assert entry == '["tini", "-g", "--", "scripts/docker-entrypoint.sh"]'
    script = REPO / "scripts" / "docker-entrypoint.sh"
    assert script.stat().st_mode & 0o111
    text = script.read_text()
    assert "train) shift; exec yolopipe box sagemaker" in text  # SageMaker runs `IMAGE train`
    assert [line.split()[:2] for line in text.splitlines() if line.startswith("dvc ")] == [
        ["dvc", "pull"], ["dvc", "repro"], ["dvc", "push"]]


def test_dockerignore_keeps_secrets_and_outputs_out_but_the_repository_in():
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p.rstrip("/")) or fnmatch.fnmatch(path, p.rstrip("/") + "/*")
                   or fnmatch.fnmatch(path, "*/" + p.removeprefix("**/").rstrip("/") + "/*") for p in patterns)

    for path in (".dvc/config.local", ".venv/bin/python", "models/best.pt", "models/last.pt", "models/best.onnx",
                 "data/staged/images/a.jpg", ".dvc/cache/files/md5/ab/cd", "gha-creds-1234.json",
                 "src/yolopipe/__pycache__/cli.cpython-311.pyc"):
        assert ignored(path), path
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    kept_out = [path for path in tracked.splitlines() if ignored(path)]
    assert kept_out == [], "tracked files the image would lack"
