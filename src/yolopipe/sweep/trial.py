"""One sweep trial on a Ray worker: a real `dvc exp run` in its own clone of the project.

The clone starts at the sweep's baseline commit; the experiment is pushed to the project (or its git
remote) only once `dvc exp run` has committed it, as one ref update, so a trial cut off anywhere leaves
no experiment behind. While it runs, the trial reads the per-epoch dvclive series and reports each new
epoch to Tune; under ASHA it holds training at each epoch until the scheduler has judged it, and asks
training to finish early when ASHA says so (see yolopipe.sweep.asha, yolopipe.train.sweep_control).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from yolopipe import paths
from yolopipe.stage.location import reap_abandoned

STOP_BOARD = "yolopipe-stop-requests"  # the named Ray actor holding ASHA's stop requests (sweep/asha.py)
POLL_S = 0.25
DECISION_TIMEOUT_S = 300  # Tune's controller judges a result within seconds; past this the trial goes on
GRACE_S = 60  # after SIGTERM: training stops at a batch boundary, DVC exits; then SIGKILL


@dataclass(frozen=True)
class TrialJob:
    """What every trial of one sweep shares; plain values, so Ray ships it to any node."""

    sweep: str
    source: str
    """Git URL or path the trial clones."""
    baseline: str
    """The commit every trial starts from."""
    shared_cache: str | None
    """The project's DVC cache when trials run beside it; None: data comes from and goes to the DVC remote."""
    workdir: str
    metric: str
    threads: int
    stage_dir: str | None
    """YOLOPIPE_STAGE_DIR of the driver; each trial's clone stages into a folder of its own there."""
    judged: bool = False
    """A scheduler (ASHA) judges every epoch: training waits for each decision."""


class TrialFailed(RuntimeError):
    """`dvc exp run` exited non-zero; the message names the log."""


def experiment_name(sweep: str, trial_id: str) -> str:
    return f"{sweep}-{trial_id}"


def trial_dir(job: TrialJob, trial_id: str) -> Path:
    return Path(job.workdir) / experiment_name(job.sweep, trial_id)


def run_trial(config: dict, job: TrialJob) -> None:
    """The Tune function trainable: `config` maps params.yaml keys (train.lr0) to this trial's values."""
    import ray
    from ray import tune

    trial_id = tune.get_context().get_trial_id()
    name, home = experiment_name(job.sweep, trial_id), trial_dir(job, trial_id)
    reap(home)  # an earlier attempt of this trial whose worker died
    shutil.rmtree(home / "repo", ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "log.txt"
    _note(log_path, f"trial {name} started on {os.uname().nodename}")
    repo = _clone(job, home / "repo", log_path)
    overrides = [arg for key, value in sorted(config.items()) for arg in ("-S", f"{key}={_yaml_value(value)}")]
    command = ["dvc", "exp", "run", "-n", name, *overrides, *([] if job.shared_cache else ["--pull"])]
    stop_file, gate_file = home / "stop-requested", home / "epoch-judged"
    stop_file.unlink(missing_ok=True)
    gate_file.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(job.threads), paths.STOP_FILE_ENV: str(stop_file)}
    env.pop(paths.STAGE_DIR_ENV, None)
    env.pop(paths.EPOCH_GATE_ENV, None)
    stage_dir = os.environ.get(paths.STAGE_DIR_ENV) or job.stage_dir  # this node's own first
    if stage_dir:  # each trial's clone stages into a folder of its own there (yolopipe.stage.location)
        env[paths.STAGE_DIR_ENV] = stage_dir
    board = ray.get_actor(STOP_BOARD) if job.judged else None
    if board is not None:
        env[paths.EPOCH_GATE_ENV] = str(gate_file)
    with log_path.open("a") as log:
        log.write(f"{_now()} $ {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # its own group: a stop reaches DVC and the stage
    (home / "pgid").write_text(str(process.pid))
    series = repo / paths.TRAIN_DIR / "plots" / "metrics" / f"{job.metric}.tsv"
    reported, last = 0, None
    try:
        while True:
            done = process.poll() is not None
            for epoch, value in read_series(series)[reported:]:
                tune.report({job.metric: value, "epoch": epoch})
                reported, last = epoch, value
                if board is not None and not done:
                    _pass_on_decision(board, trial_id, epoch, process, stop_file, gate_file, log_path)
            if done:
                break
            time.sleep(POLL_S)
    finally:
        stop_group(process)
        (home / "pgid").unlink(missing_ok=True)
    _note(log_path, f"dvc exp run exited {process.returncode}")
    if process.returncode != 0:
        raise TrialFailed(f"dvc exp run exited {process.returncode}; log: {log_path}")
    _push(job, repo, name, log_path)
    summary = _read_json(repo / paths.TRAIN_DIR / "metrics.json")
    evaluation = _read_json(repo / paths.EVALUATE_DIR / "metrics.json")
    tune.report({job.metric: last, "epoch": reported, "experiment": name, "log": str(log_path),
                 "stop_requested": stop_file.exists(), "epochs_completed": summary.get("epochs_completed"),
                 "stopped_early": summary.get("stopped_early"), "evaluate/mAP50-95": evaluation.get("mAP50-95")})
    _note(log_path, f"experiment {name} is in {job.source}")
    shutil.rmtree(repo, ignore_errors=True)  # the experiment lives in the project now; the log stays
    if stage_dir:  # and this clone's copy on the staging disk is nobody's now
        reap_abandoned(Path(stage_dir))


def _pass_on_decision(board, trial_id: str, epoch: int, process: subprocess.Popen, stop_file: Path,
                      gate_file: Path, log_path: Path) -> None:
    """Wait for ASHA's decision on `epoch`; on a stop, touch the stop file; then let training past the epoch."""
    import ray

    deadline = time.monotonic() + DECISION_TIMEOUT_S
    while (stop := ray.get(board.decision.remote(trial_id, epoch))) is None:
        if process.poll() is not None:
            return
        if time.monotonic() > deadline:
            _note(log_path, f"no decision on epoch {epoch} after {DECISION_TIMEOUT_S} s; training goes on")
            break
        time.sleep(0.05)
    if stop and not stop_file.exists():
        stop_file.write_text(f"ASHA, at epoch {epoch}\n")
    partial = gate_file.with_name(gate_file.name + ".partial")
    partial.write_text(f"{epoch}\n")
    partial.replace(gate_file)  # training never reads half a number


def read_series(tsv: Path) -> list[tuple[int, float]]:
    """(1-based epoch, value) rows of a dvclive series; a line still being written is left for later."""
    try:
        text = tsv.read_text()
    except FileNotFoundError:
        return []
    lines = text.splitlines()[: text.count("\n")]  # complete lines only
    rows = list(csv.reader(lines, delimiter="\t"))
    if not rows or "step" not in rows[0]:
        return []
    step, width = rows[0].index("step"), len(rows[0])  # columns: timestamp, step, the series
    return [(int(row[step]) + 1, float(row[-1])) for row in rows[1:] if len(row) == width]


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the trial's process group (training stops at a batch boundary, DVC records nothing), then
    SIGKILL whatever is left after GRACE_S."""
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(process.pid, signal.SIGKILL)  # stragglers (a stage's workers) even after DVC exited
    process.wait()


def reap(home: Path) -> None:
    """Stop the process group a dead worker left running in `home`, if it is still that trial's."""
    pgid_file = home / "pgid"
    try:
        pgid = int(pgid_file.read_text())
        cwd = Path(os.readlink(f"/proc/{pgid}/cwd"))
    except (FileNotFoundError, ValueError, OSError):
        pgid_file.unlink(missing_ok=True)
        return
    if cwd.is_relative_to(home):  # not a recycled pid of someone else's process
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        while Path(f"/proc/{pgid}").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        _signal_group(pgid, signal.SIGKILL)
    pgid_file.unlink(missing_ok=True)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _clone(job: TrialJob, repo: Path, log_path: Path) -> Path:
    steps = [["git", "clone", "-q", "--no-checkout", job.source, str(repo)],
             ["git", "checkout", "-q", "--detach", job.baseline]]
    if job.shared_cache:  # beside the project: its cache holds the data and takes the outputs
        steps += [["dvc", "cache", "dir", "--local", job.shared_cache], ["dvc", "checkout", "-q"]]
    with log_path.open("a") as log:
        for step in steps:
            log.write(f"{_now()} $ {' '.join(step)}\n")
            log.flush()
            code = subprocess.run(step, cwd=repo if step[1] != "clone" else None, stdout=log,
                                  stderr=subprocess.STDOUT).returncode
            if code and step[:2] != ["dvc", "checkout"]:  # checkout: dvc exp run names what is missing
                raise TrialFailed(f"{' '.join(step)} exited {code}; log: {log_path}")
    for key, value in (("user.name", "yolopipe sweep"), ("user.email", "sweep@yolopipe.invalid")):
        if subprocess.run(["git", "config", key], cwd=repo, capture_output=True).returncode:
            subprocess.run(["git", "config", key, value], cwd=repo, check=True)
    return repo


def _push(job: TrialJob, repo: Path, name: str, log_path: Path) -> None:
    """The experiment's ref to the project in one update, and without a shared cache its outputs to the
    DVC remote (`dvc exp pull` on any machine then shows and restores it)."""
    command = ["dvc", "exp", "push", "--force", *(["--no-cache"] if job.shared_cache else []), job.source, name]
    with log_path.open("a") as log:
        log.write(f"{_now()} $ {' '.join(command)}\n")
        log.flush()
        code = subprocess.run(command, cwd=repo, stdout=log, stderr=subprocess.STDOUT).returncode
    if code:
        raise TrialFailed(f"dvc exp push exited {code}; log: {log_path}")


def _yaml_value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _now() -> str:
    """The wall-clock time in the trial's log, so a slow step is visible."""
    return time.strftime("%H:%M:%S")


def _note(log_path: Path, line: str) -> None:
    with log_path.open("a") as log:
        log.write(f"{_now()} {line}\n")
