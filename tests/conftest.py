"""Shared fixtures: tiny real datasets, a network guard, and a command runner."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from objstore import GCS_TEST_ENV, GcsEmulator, MotoS3
from yolopipe.synth import synthesize

# gcsfs reads this once, when first imported (by any test, through DVC): set it before that happens, or
# every in-process call to the GCS emulator stalls on a gRPC probe (measured: 436 s for one test).
os.environ.update(GCS_TEST_ENV)

REPO = Path(__file__).resolve().parents[1]
NETGUARD = Path(__file__).parent / "netguard"
TINY_TRAIN = {"epochs": 2, "imgsz": 64, "batch": 8}  # seconds per run on the sample, and still real training
GIT = ["git", "-c", "user.name=yolopipe tests", "-c", "user.email=tests@yolopipe.invalid"]


@pytest.fixture(scope="session", autouse=True)
def ultralytics_through_the_adapter(tmp_path_factory) -> None:
    """The test process itself imports Ultralytics (a torch.load of a checkpoint unpickles its classes), and
    Ultralytics fixes its config directory at its first import: make that import ours, so no test writes
    ~/.config/Ultralytics. (yolopipe's commands always import it through the adapter first.)"""
    from yolopipe.ultra import load_ultralytics

    load_ultralytics(tmp_path_factory.mktemp("ultralytics"))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A real 3-class YOLO dataset of 40 images; treat as read-only (copy it to modify)."""
    root = tmp_path_factory.mktemp("tiny") / "dataset"
    synthesize(root, {"train": 24, "val": 8, "test": 8}, width=96, height=96, seed=1)
    return root


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> MotoS3:
    """moto_server on 127.0.0.1, shared by the session: give each test its own bucket."""
    server = MotoS3(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory) -> GcsEmulator:
    """The byte-exact GCS emulator on 127.0.0.1, shared by the session: give each test its own bucket."""
    server = GcsEmulator(tmp_path_factory.mktemp("gcs")).start()
    yield server
    server.stop()


@pytest.fixture(params=["gcs", "s3"])
def object_store(request) -> GcsEmulator | MotoS3:
    """Each test that takes it runs once against GCS and once against S3."""
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture
def netguard_env(tmp_path) -> tuple[dict[str, str], Path]:
    return guarded_env(tmp_path)


def guarded_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Environment for subprocesses in which every non-loopback connection fails and is logged."""
    log = tmp_path / "netguard.log"
    log.touch()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NETGUARD), env.get("PYTHONPATH")]))
    env["YOLOPIPE_NETGUARD_LOG"] = str(log)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    return env, log


def run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command, showing its output when it fails."""
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}\n"
                             f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}")
    return result


def copy_project(root: Path, params: dict[str, dict]) -> Path:
    """This repository as a user clones it (tracked and new files, nothing git ignores) in `root`, with the
    given params.yaml sections updated, in a new git repository with one empty commit."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    values = yaml.safe_load((root / "params.yaml").read_text())
    for section, update in params.items():
        values[section].update(update)
    (root / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], root)
    run([*GIT, "commit", "-q", "--allow-empty", "-m", "empty"], root)
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root, to prove nothing was written into it."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


class TrainedRun:
    """A 2-epoch CPU training on the tiny dataset, shared by the train, evaluate and export tests."""

    def __init__(self, workdir: Path, dataset: Path) -> None:
        from yolopipe.params import TrainParams
        from yolopipe.stage import stage
        from yolopipe.train import train

        self.workdir = workdir
        self.scratch = workdir / "scratch"
        self.models_dir = workdir / "models"
        self.live_dir = workdir / "live"
        self.data_yaml = stage(dataset, workdir / "staged").data_yaml
        self.params = TrainParams(**TINY_TRAIN)
        self.result = train(self.params, self.data_yaml, self.models_dir, self.live_dir, self.scratch)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_dataset) -> TrainedRun:
    workdir = tmp_path_factory.mktemp("trained")
    cwd = Path.cwd()
    os.chdir(workdir)  # so a stray write by Ultralytics into the working directory shows up
    try:
        return TrainedRun(workdir, tiny_dataset)
    finally:
        os.chdir(cwd)


def kill_stage_midway(source: Path, staged: Path, stage_params: str = "") -> None:
    """Run `stage(source, staged[, StageParams(...)])` in a child and kill -9 it once 300 train images exist."""
    code = ("import sys; from pathlib import Path; from yolopipe.stage import stage; "
            "from yolopipe.params import StageParams; "
            f"stage(Path(sys.argv[1]), Path(sys.argv[2]), StageParams({stage_params}))")
    child = subprocess.Popen([sys.executable, "-c", code, str(source), str(staged)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(staged.glob("images/train/*"))) < 300:
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    child.wait()
