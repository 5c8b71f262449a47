"""The worker side of validate: check a chunk of images and labels, and fold it into one small summary.

Workers aggregate per chunk (counts, findings, one hash per image) so the parent only merges a few
hundred summaries: with per-file results the parent's bookkeeping, not the checks, bounded the speed.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from yolopipe.dataset import label_file
from yolopipe.findings import Finding
from yolopipe.validate.imagecheck import check_image
from yolopipe.validate.labelcheck import check_label


@dataclass
class SplitCounts:
    images: int = 0
    backgrounds: int = 0
    instances: int = 0
    classes: Counter[int] = field(default_factory=Counter)
    sizes: Counter[str] = field(default_factory=Counter)
    """"WxH" (after EXIF orientation) -> images."""

    def merge(self, other: SplitCounts) -> None:
        self.images += other.images
        self.backgrounds += other.backgrounds
        self.instances += other.instances
        self.classes.update(other.classes)
        self.sizes.update(other.sizes)


@dataclass
class ChunkSummary:
    splits: dict[int, SplitCounts] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    hashes: list[tuple[str, int, str]] = field(default_factory=list)
    """(digest, split index, image path) for every readable image."""
    box_files: list[tuple[str, int]] = field(default_factory=list)
    """(label path, first box line) for label files of boxes only; polygon_files likewise."""
    polygon_files: list[tuple[str, int]] = field(default_factory=list)
    images_of_labels: dict[str, str] = field(default_factory=dict)
    """Label path -> image path, for label files with findings (so a bad pair counts as one bad image)."""


def scan_chunk(chunk: list[tuple[int, str, str | None]], root: str, nc: int, hash_name: str,
               full_decode: bool) -> ChunkSummary:
    """Check every (split index, absolute image path, known digest or None) of a chunk."""
    summary = ChunkSummary()
    prefix = root.rstrip(os.sep) + os.sep
    for split, image, known in chunk:
        counts = summary.splits.setdefault(split, SplitCounts())
        counts.images += 1
        checked = check_image(image, None if known else hash_name, full_decode)
        image_rel = _relative(image, prefix, root)
        codes = set()
        if checked.problems:
            summary.findings += [Finding(image_rel, None, code, message)
                                 for code, message in checked.problems]
            codes = {code for code, _ in checked.problems}
            if "image.missing" in codes:
                continue
        if checked.width:
            counts.sizes[f"{checked.width}x{checked.height}"] += 1
        digest = known or checked.digest
        if digest and "image.empty" not in codes:
            summary.hashes.append((digest, split, image_rel))
        label = label_file(image)
        labelled = check_label(label, nc)
        if not labelled.found or not labelled.class_counts and not labelled.problems:
            counts.backgrounds += 1
            continue
        label_rel = _relative(label, prefix, root)
        if labelled.problems:
            summary.images_of_labels[label_rel] = image_rel
            summary.findings += [Finding(label_rel, line, code, message)
                                 for code, line, message in labelled.problems]
        for class_id, instances in labelled.class_counts:
            counts.classes[class_id] += instances
            counts.instances += instances
        if labelled.first_box_line and not labelled.first_polygon_line:
            summary.box_files.append((label_rel, labelled.first_box_line))
        elif labelled.first_polygon_line and not labelled.first_box_line:
            summary.polygon_files.append((label_rel, labelled.first_polygon_line))
    return summary


def _relative(path: str, prefix: str, root: str) -> str:
    relative = path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, root)
    return relative.replace(os.sep, "/")
