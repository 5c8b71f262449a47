"""What `validate` can find: stable codes with fixed severities, and the policy that decides failure.

Codes are part of the interface (params.yaml's `validate.fail_on` names them, reports are diffed across
dataset versions), so renaming one is a breaking change; add new codes instead.
"""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("error", "warning", "info")

CODES: dict[str, tuple[str, str]] = {
    # code: (severity, what it means)
    "yaml.missing": ("error", "no data.yaml where the dataset should be"),
    "yaml.invalid": ("error", "data.yaml is not valid YAML or not a mapping"),
    "yaml.names_invalid": ("error", "'names' is neither a non-empty list nor a mapping of ids 0..n-1"),
    "yaml.nc_mismatch": ("error", "'nc' differs from the number of names"),
    "yaml.split_missing": ("error", "the train or val split is not given"),
    "yaml.split_invalid": ("error", "a split is neither a path nor a list of paths"),
    "yaml.split_not_found": ("error", "a split points at a path that does not exist"),
    "split.empty": ("error", "a split holds no images"),
    "image.missing": ("error", "a .txt split list names an image that does not exist"),
    "image.empty": ("error", "a zero-byte image file"),
    "image.corrupt": ("error", "the image does not open or its data does not decode"),
    "image.truncated": ("error", "the file ends before the image does (no JPEG EOI / PNG IEND)"),
    "image.unsupported_format": ("error", "the content is a format Ultralytics does not read"),
    "image.too_small": ("error", "under 10 px on a side (Ultralytics drops it)"),
    "image.skipped_file": ("warning", "a file in an image directory that Ultralytics ignores"),
    "image.duplicate": ("warning", "the same image content twice in one split"),
    "image.split_leak": ("error", "the same image content in two splits"),
    "label.unreadable": ("error", "the label file is not UTF-8 text"),
    "label.bad_columns": ("error", "a row is neither 'class x y w h' nor 'class x1 y1 x2 y2 x3 y3 ...'"),
    "label.mixed_formats": ("error", "boxes and polygons in one label file"),
    "label.inconsistent_format": ("error", "boxes in a polygon dataset or polygons in a box dataset"),
    "label.not_numeric": ("error", "a value is not a number"),
    "label.not_finite": ("error", "a value is NaN or infinite"),
    "label.class_not_integer": ("error", "a class id is not a whole number"),
    "label.class_out_of_range": ("error", "a class id is not in [0, nc)"),
    "label.coord_out_of_range": ("error", "a coordinate is outside [0, 1] beyond the tolerance"),
    "label.degenerate_box": ("error", "a box or polygon with zero or negative width or height"),
    "label.duplicate_row": ("warning", "the same row twice in a label file (Ultralytics drops one)"),
    "label.orphan": ("warning", "a label file with no image"),
    "class.no_train_instances": ("warning", "a class that never occurs in train"),
}

# Findings about the dataset as a whole fail the stage regardless of max_bad_fraction.
DATASET_WIDE = frozenset(code for code in CODES if code.startswith(("yaml.", "split.", "class.")))


@dataclass(frozen=True, order=True)
class Finding:
    """One problem, located by a path relative to the dataset root and, for label rows, a 1-based line."""

    path: str
    line: int | None
    code: str
    message: str

    @property
    def severity(self) -> str:
        return CODES[self.code][0]

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.code}: {self.message}"

    def as_dict(self) -> dict:
        return {"path": self.path, "line": self.line, "code": self.code, "severity": self.severity,
                "message": self.message}


def sort_key(finding: Finding) -> tuple:
    # None sorts before any line number, so file-level findings come first.
    return finding.path, finding.line or 0, finding.code, finding.message


def check_fail_on(entries: list[str]) -> list[str]:
    """Reject a misspelt `fail_on` entry instead of silently never failing on it."""
    unknown = [e for e in entries if e not in SEVERITIES and e not in CODES]
    if unknown:
        raise ValueError(f"unknown severity or finding code {unknown[0]!r}; severities are "
                         f"{', '.join(SEVERITIES)}, codes are listed in yolopipe/findings.py")
    return entries


def is_failing(finding: Finding, fail_on: list[str]) -> bool:
    return finding.severity in fail_on or finding.code in fail_on


def decide(findings: list[Finding], fail_on: list[str], max_bad_fraction: float, image_count: int,
           images_of_labels: dict[str, str]) -> tuple[list[Finding], float, bool]:
    """The failing findings, the fraction of bad images, and whether the dataset passes.

    A label finding counts against its image, so an image and its label file are one bad image.
    """
    failing = [f for f in findings if is_failing(f, fail_on)]
    bad_images = {images_of_labels.get(f.path, f.path) for f in failing if f.code not in DATASET_WIDE}
    bad_fraction = min(1.0, len(bad_images) / image_count) if image_count else float(bool(bad_images))
    dataset_wide = any(f.code in DATASET_WIDE for f in failing)
    passed = not dataset_wide and (not failing or bad_fraction <= max_bad_fraction)
    return failing, bad_fraction, passed
