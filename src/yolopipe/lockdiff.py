"""After `dvc repro`: which outputs this machine wrote with other bytes than the committed dvc.lock records,
and why a newcomer's fresh clone shows dvc.lock modified (`make demo` prints this).

Training is bit-for-bit repeatable on one machine, not across machines: another CPU model, a GPU, another
thread count or another build of the math libraries rounds differently, so the weights, and everything
computed from them, come out slightly different. That is expected, and nothing is broken.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class LockDiff:
    changed: list[str]
    """Outputs whose recorded hash differs from the committed dvc.lock's, in dvc.yaml order."""

    @property
    def summary(self) -> str:
        if not self.changed:
            return "dvc.lock: every output has the bytes the committed dvc.lock records"
        return "\n".join([
            f"dvc.lock: this machine wrote other bytes than the committed record for {', '.join(self.changed)}.",
            "  Expected on a machine other than the one that committed it: training repeats bit for bit on one",
            "  machine, but another CPU, a GPU or another library build rounds differently, so the weights and",
            "  the metrics computed from them differ slightly. Nothing is broken. What you can do:",
            "    git diff dvc.lock       # the new hashes",
            "    git checkout dvc.lock   # keep the committed record (`dvc status` then lists these outputs)",
            "    dvc pull                # with the team's remote: the recorded bytes, without retraining",
        ])


def lock_diff(project: Path = Path("."), rev: str = "HEAD") -> LockDiff:
    """Compare the outputs' hashes in `project`'s dvc.lock with those of dvc.lock at git `rev`."""
    lock = project / "dvc.lock"
    committed = subprocess.run(["git", "show", f"{rev}:dvc.lock"], cwd=project, capture_output=True, text=True)
    if committed.returncode != 0 or not lock.is_file():  # not a git checkout, or nothing committed yet
        return LockDiff([])
    before, after = _output_hashes(committed.stdout), _output_hashes(lock.read_text())
    return LockDiff([path for path, md5 in after.items() if path in before and before[path] != md5])


def _output_hashes(text: str) -> dict[str, str | None]:
    stages = (yaml.safe_load(text) or {}).get("stages", {})
    return {out["path"]: out.get("md5") for stage in stages.values() for out in stage.get("outs", [])}
