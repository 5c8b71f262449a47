"""The typed schema of params.yaml: one place that says which keys exist and what values they take.

Every stage loads its parameters through `load_params`, so a typo or a bad value fails before any work
with a message naming the key, instead of deep inside Ultralytics an hour later.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from yolopipe.errors import PipelineError
from yolopipe.findings import check_fail_on


class Section(BaseModel):
    # Unknown keys are errors: a misspelt `epoch:` must not silently train with the default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Section):
    root: Path = Path("data/sample")
    """A YOLO dataset directory holding data.yaml (the sample, or a DVC-tracked data/dataset-v1)."""


class ValidateParams(Section):
    fail_on: list[str] = ["error"]
    """Severities (error, warning, info) or finding codes (see yolopipe/findings.py) that fail the stage."""
    max_bad_fraction: float = Field(0.0, ge=0.0, le=1.0)
    """Fraction of images with failing findings (in the image or its label file) tolerated before failing."""
    full_decode: bool = False
    """Decode every image completely instead of reading headers (slower, catches more corruption)."""

    @field_validator("fail_on")
    @classmethod
    def _known_codes(cls, value: list[str]) -> list[str]:
        return check_fail_on(value)


class StageParams(Section):
    link: bool = True
    """On the dataset's file system, reflink files (copy-on-write) where it can, and hard-link files that are
    already read-only (a DVC-tracked dataset linked from the cache) instead of copying them."""
    max_side: int | None = Field(None, ge=32)
    """Write images whose long side is at most this many pixels (EXIF orientation applied); null: as they are."""


class PackParams(Section):
    shard_mb: int = Field(1024, ge=1)
    """Size of each shard of `yolopipe pack`, in MiB: large enough that DVC moves few objects, small enough
    that stage extracts several at once."""
    repack_dead_fraction: float = Field(0.25, gt=0.0, le=1.0)
    """`yolopipe pack` rewrites every shard once removed or replaced members make up more than this fraction
    of the member bytes in the shards (until then it only adds shards)."""


class TrainParams(Section):
    model: str = "yolo11n.yaml"
    """A model yaml to train from scratch, or a local .pt file (DVC-tracked under models/pretrained/)."""
    epochs: int = Field(30, ge=1)
    imgsz: int = Field(160, ge=32)
    batch: int = Field(16, ge=-1)
    """Images per batch; -1 lets Ultralytics choose from GPU memory (one GPU only; on the CPU it uses 16)."""
    device: str = "auto"
    """'auto' (a GPU when there is one, else the CPU), 'cpu', a GPU index 0, or a list [0, 1] or '0,1' (DDP)."""
    workers: int = Field(8, ge=0)
    """Data loader processes per GPU; Ultralytics always uses 0 on the CPU."""
    seed: int = 0
    deterministic: bool = True
    optimizer: Literal["auto", "SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp"] = "auto"
    lr0: float = Field(0.01, gt=0.0)
    """Initial learning rate; with optimizer 'auto' Ultralytics chooses its own and ignores this."""
    patience: int = Field(100, ge=0)
    mosaic: float = Field(1.0, ge=0.0, le=1.0)
    max_hours: float | None = Field(None, gt=0.0)
    """Training budget: stop cleanly after this many hours (per run; a resumed run gets a new budget)."""
    checkpoint_every: int = Field(0, ge=0)
    """Upload models/last.pt to the DVC remote every N epochs (0: off), so another machine can resume."""
    mlflow_uri: str | None = None
    """An MLflow tracking server (http://host:5000) that mirrors params, per-epoch metrics and the weights;
    null: off. Credentials go in MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN, never here."""

    @field_validator("device", mode="before")
    @classmethod
    def _device(cls, value: object) -> str:
        if isinstance(value, bool):
            raise ValueError("must be auto, cpu, a GPU index or a list of them")
        if isinstance(value, int):
            value = str(value)
        elif isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|mps|\d+(,\d+)*", value.replace(" ", "")):
            raise ValueError("must be auto, cpu, a GPU index (0) or a list of them ([0, 1] or '0,1')")
        return value.replace(" ", "")

    @model_validator(mode="after")
    def _autobatch_on_one_device(self) -> TrainParams:
        if self.batch == -1 and "," in self.device:
            raise ValueError("batch -1 (auto-batch) works on one GPU only; give a batch size for multi-GPU "
                             "training (train.batch)")
        return self

    @field_validator("imgsz")
    @classmethod
    def _stride_multiple(cls, value: int) -> int:
        if value % 32:
            raise ValueError("must be a multiple of 32 (the model stride)")
        return value

    @field_validator("mlflow_uri")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).password is not None:
            raise ValueError("must not hold a password (params.yaml is tracked); set MLFLOW_TRACKING_USERNAME "
                             "and MLFLOW_TRACKING_PASSWORD in the environment instead")
        return value

    @field_validator("batch")
    @classmethod
    def _batch_not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be a positive number of images, or -1 for auto-batch")
        return value


class EvaluateParams(Section):
    split: Literal["test", "val"] = "test"
    """Held-out split to score; falls back to val when the dataset has no test split."""
    conf: float = Field(0.001, gt=0.0, lt=1.0)
    """Confidence threshold for the mAP figures (low, so the PR curve reaches high recall)."""
    iou: float = Field(0.7, gt=0.0, le=1.0)
    batch: int = Field(16, ge=1)
    images: int = Field(4, ge=0, le=32)
    """Held-out images drawn with their true and predicted boxes (the first, sorted by name)."""
    plot_conf: float = Field(0.25, gt=0.0, lt=1.0)
    """Confidence threshold of the boxes drawn on those images, the one a deployment would use."""


class ExportParams(Section):
    formats: list[Literal["onnx", "torchscript", "openvino", "engine"]] = Field(["onnx"], min_length=1)
    """Export formats; openvino needs `pip install openvino`, engine (TensorRT) an NVIDIA GPU and tensorrt."""
    imgsz: int | None = Field(None, ge=32)
    """Input size of the export; null: the size the model was trained at."""
    half: bool = False
    """FP16 weights (ONNX on CPU, every format on a GPU); raise max_abs_diff to about 1e-2 with it."""
    dynamic: bool = False
    """Dynamic batch and image size (ONNX, OpenVINO, TensorRT)."""
    simplify: bool = True
    opset: int | None = Field(None, ge=11)
    max_abs_diff: float = Field(1e-4, gt=0.0)
    """Largest tolerated difference between an export's and the PyTorch model's raw outputs
    (class scores, and boxes as fractions of the image size)."""

    @field_validator("imgsz")
    @classmethod
    def _stride_multiple(cls, value: int | None) -> int | None:
        if value is not None and value % 32:
            raise ValueError("must be a multiple of 32 (the model stride)")
        return value

    @field_validator("formats")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists a format twice")
        return value


class Params(Section):
    data: DataParams = DataParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    stage: StageParams = StageParams()
    pack: PackParams = PackParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    export: ExportParams = ExportParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check params.yaml; raise PipelineError naming the first bad key."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError("parameter file not found", path=path,
                            hint="run from the repository root, or pass --params PATH")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        line = exc.problem_mark.line + 1 if getattr(exc, "problem_mark", None) else None
        raise PipelineError(f"not valid YAML: {getattr(exc, 'problem', exc)}", path=path, line=line) from None
    return check_params(raw, path)


def check_params(raw: object, path: str | Path = "params.yaml") -> Params:
    """Check parsed params (params.yaml's content, maybe with overrides); errors name `path` and every bad key."""
    if not isinstance(raw, dict):
        raise PipelineError("expected a mapping of sections (data, train, ...)", path=path)
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise PipelineError(_describe(exc), path=path) from None


def _describe(exc: ValidationError) -> str:
    """One line per bad key, e.g. `train.epochs: Input should be greater than or equal to 1 (got -1)`."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key{_suggestion(error['loc'])}")
        else:
            lines.append(f"{key}: {error['msg'].removeprefix('Value error, ')} (got {error['input']!r})")
    return "invalid parameters\n  " + "\n  ".join(lines)


def _suggestion(loc: tuple) -> str:
    model: type[BaseModel] = Params
    for part in loc[:-1]:
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        if field is None or not isinstance(field.annotation, type):
            return ""
        model = field.annotation
    known = [f.alias or name for name, f in model.model_fields.items()]
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    return f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
