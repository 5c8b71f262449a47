"""What one commit records about its model, read through DVC at that revision without checking it out: the
artifacts dvc.yaml declares, the md5 dvc.lock gives each of them, and the params."""

from __future__ import annotations

import json
from dataclasses import dataclass

import yaml

from yolopipe.errors import PipelineError
from yolopipe.params import Params

DETECTOR = "yolo-detector"  # the registry name of the weights; versions and stages follow this one
CARD = "models/model_card.json"
EXPORT_METRICS = "results/export/metrics.json"


@dataclass(frozen=True)
class ArtifactFile:
    name: str
    """Its registry name in dvc.yaml's `artifacts:` (yolo-detector, yolo-detector-onnx, ...)."""
    path: str
    md5: str


@dataclass(frozen=True)
class ModelRecord:
    commit: str
    artifacts: list[ArtifactFile]
    """Every artifact dvc.yaml declares at the commit, the detector first."""
    outputs: dict[str, str]
    """Every cached output dvc.lock lists -> its md5."""
    params: Params

    @property
    def short(self) -> str:
        return self.commit[:7]


def read_record(repo, commit: str) -> ModelRecord:
    """The record of `commit` in `repo`, a dvc.repo.Repo opened at that revision."""
    dvc_yaml = _load_yaml(repo, "dvc.yaml", commit) or {}
    declared = dvc_yaml.get("artifacts") or {}
    if DETECTOR not in declared:
        raise PipelineError(f"dvc.yaml at commit {commit[:7]} declares no artifact '{DETECTOR}'",
                            path="dvc.yaml", hint="add it under `artifacts:` with `path: models/best.pt`")
    outputs = _locked_outputs(_load_yaml(repo, "dvc.lock", commit) or {})
    names = [DETECTOR, *sorted(name for name in declared if name != DETECTOR)]
    artifacts = []
    for name in names:
        path = declared[name]["path"]
        if path not in outputs:
            raise PipelineError(f"no stage of dvc.lock at commit {commit[:7]} outputs {path} (artifact {name})",
                                path="dvc.lock", hint="run `dvc repro`, then commit dvc.lock and `dvc push`")
        artifacts.append(ArtifactFile(name, path, outputs[path]))
    try:
        params = Params.model_validate(_load_yaml(repo, "params.yaml", commit) or {})
    except ValueError as exc:
        raise PipelineError(f"params.yaml at commit {commit[:7]} does not load: {exc}", path="params.yaml") from None
    return ModelRecord(commit, artifacts, outputs, params)


def read_json_output(repo, record: ModelRecord, path: str) -> dict | None:
    """A small cached output (a metrics file, the card) of the commit, from the cache or the remote; None when
    dvc.lock lists no such output."""
    if path not in record.outputs:
        return None
    with repo.dvcfs.open(path) as handle:
        return json.loads(handle.read())


def _load_yaml(repo, name: str, commit: str):
    fs = repo.fs
    path = fs.join(repo.root_dir, name)
    if not fs.exists(path):
        return None
    try:
        return yaml.safe_load(fs.read_text(path))
    except yaml.YAMLError as exc:
        raise PipelineError(f"{name} at commit {commit[:7]} is not valid YAML: {exc}", path=name) from None


def _locked_outputs(lock: dict) -> dict[str, str]:
    outputs = {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("md5"):
                outputs[out["path"]] = out["md5"]
    return outputs
