"""validate: prove the dataset is what Ultralytics will read before a GPU-hour is spent on it.

Every image and label file is checked in parallel (header reads, not full decodes), findings get stable
codes (findings.py), and params decide which of them fail. data.yaml problems are findings too, never
exceptions: a dataset whose data.yaml cannot be read fails with a `yaml.*` finding and a report.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from yolopipe.dataset import SPLITS, Dataset, label_file, read_dataset, split_file_names
from yolopipe.dvchashes import recorded_md5s
from yolopipe.findings import Finding, decide, sort_key
from yolopipe.params import ValidateParams
from yolopipe.validate.outputs import build_report, write_outputs
from yolopipe.validate.scan import ChunkSummary, SplitCounts, scan_chunk

PARALLEL_FROM = 1000  # below this many images a process pool costs more than it saves
PROGRESS_FROM = 10_000  # show progress on a non-tty stderr (CI, logs) only for datasets this large
TOP_SIZES = 10


@dataclass(frozen=True)
class ValidationResult:
    passed: bool
    summary: str
    """One line: images, backgrounds, instances, splits, errors and warnings."""
    findings: list[Finding]
    failing: list[Finding]
    """The findings params' fail_on selects; they fail the stage unless max_bad_fraction tolerates them."""
    report_path: Path | None
    counts: dict[str, int | float] = field(default_factory=dict)
    splits: dict[str, dict] = field(default_factory=dict)
    hashes_from_dvc: int = 0
    """Images whose content hash came from DVC's state instead of being read and hashed."""
    seconds: float = 0.0


def validate(dataset: Path, params: ValidateParams, out_dir: Path | None = None,
             jobs: int | None = None) -> ValidationResult:
    """Check the dataset at `dataset` (a directory or its data.yaml); write the report files into out_dir.

    `jobs` is the number of worker processes: None uses every core once the dataset is large enough to
    pay for a pool. Problems in data.yaml are findings (`yaml.*`), never exceptions.
    """
    started = time.perf_counter()
    reading = read_dataset(dataset)
    root = reading.dataset.root if reading.dataset else reading.yaml_path.parent
    yaml_name = _relative(reading.yaml_path, root)
    findings = [Finding(yaml_name, p.line, p.code, p.message) for p in reading.problems]
    scan = _Scan(reading.dataset, root, yaml_name)
    if reading.dataset is not None:
        scan.run(params.full_decode, jobs)
        findings += scan.findings
    findings.sort(key=sort_key)
    counts = Counter(f.severity for f in findings)
    failing, bad_fraction, passed = decide(findings, params.fail_on, params.max_bad_fraction, scan.total,
                                           scan.images_of_labels)
    totals = {key: sum(s[key] for s in scan.splits.values())
              for key in ("images", "backgrounds", "instances")}
    summary_counts = {**totals, "errors": counts["error"], "warnings": counts["warning"],
                      "infos": counts["info"], "failing": len(failing),
                      "bad_fraction": round(bad_fraction, 6)}
    summary = (f"validated {totals['images']} images ({totals['backgrounds']} backgrounds, "
               f"{totals['instances']} instances) in {_plural(len(scan.splits), 'split')}: "
               f"{_plural(counts['error'], 'error')}, {_plural(counts['warning'], 'warning')}")
    report_path = None
    if out_dir is not None:
        names = reading.dataset.names if reading.dataset else ()
        described = {"data_yaml": yaml_name, "names": list(names), "task": scan.task}
        policy = params.model_dump(mode="json")
        report = build_report(passed, described, policy, summary_counts, scan.splits, findings)
        report_path = write_outputs(Path(out_dir), report, names)
    return ValidationResult(passed, summary, findings, failing, report_path, summary_counts, scan.splits,
                            scan.hashes_from_dvc, time.perf_counter() - started)


def failure_message(result: ValidationResult, limit: int = 5) -> str:
    """What the CLI prints on stderr when validation fails: summary, first failing findings, report."""
    lines = [f"validate failed: {result.summary}"]
    lines += [f"  {finding}" for finding in result.failing[:limit]]
    if len(result.failing) > limit:
        lines.append(f"  ... and {len(result.failing) - limit} more")
    if result.counts.get("bad_fraction"):
        lines.append(f"  {result.counts['bad_fraction']:.2%} of images have failing findings")
    if result.report_path is not None:
        lines.append(f"  full report: {result.report_path}")
    return "\n".join(lines)


class _Scan:
    """Walks the splits, runs the chunked checks, and merges their summaries."""

    def __init__(self, dataset: Dataset | None, root: Path, yaml_name: str) -> None:
        self.dataset, self.root, self.yaml_name = dataset, root, yaml_name
        self.findings: list[Finding] = []
        self.splits: dict[str, dict] = {}
        self.total = 0
        self.task = "detect"
        self.hashes_from_dvc = 0
        self.images_of_labels: dict[str, str] = {}

    def run(self, full_decode: bool, jobs: int | None) -> None:
        assert self.dataset is not None
        images = self._images()
        self.total = len(images)
        known = recorded_md5s([image for _, image in images], self.root)
        self.hashes_from_dvc = len(known)
        # One hash for the whole run: DVC's md5 where it has one, else the faster sha1.
        hash_name = "md5" if known else "sha1"
        tasks = [(split, image, f"md5:{known[image]}" if image in known else None) for split, image in images]
        merged = ChunkSummary()
        counts = {index: SplitCounts() for index in range(len(SPLITS))}
        for chunk in _run_chunks(tasks, str(self.root), self.dataset.nc, hash_name, full_decode, jobs):
            for index, split_counts in chunk.splits.items():
                counts[index].merge(split_counts)
            merged.findings += chunk.findings
            merged.hashes += chunk.hashes
            merged.box_files += chunk.box_files
            merged.polygon_files += chunk.polygon_files
            self.images_of_labels.update(chunk.images_of_labels)
        self.findings += merged.findings
        self._orphan_labels({label_file(image) for _, image in images})
        self._split_stats(counts)
        self._duplicates(merged.hashes)
        self._formats(merged.box_files, merged.polygon_files)

    def _images(self) -> list[tuple[int, str]]:
        """(split index, image) for every image, and findings for empty splits and skipped files."""
        images = []
        for split, sources in self.dataset.splits.items():
            found: list[str] = []
            for source in sources:
                names, skipped = split_file_names(source)
                found += names
                self.findings += [Finding(self._rel(s), None, "image.skipped_file",
                                          f"Ultralytics ignores '{Path(s).suffix}' files") for s in skipped]
            if not found:
                self.findings.append(Finding(self.yaml_name, None, "split.empty",
                                             f"the '{split}' split has no images Ultralytics reads"))
            images += [(SPLITS.index(split), image) for image in found]
        return images

    def _orphan_labels(self, expected: set[str]) -> None:
        """Label files in the label directories that no image of any split maps to."""
        directories = {os.path.dirname(label) for label in expected}
        listed = {str(s) for sources in self.dataset.splits.values() for s in sources}
        for directory in sorted(directories):
            try:
                entries = os.scandir(directory)
            except OSError:
                continue
            with entries:
                for entry in entries:
                    if (entry.name.endswith(".txt") and entry.path not in expected
                            and entry.path not in listed and entry.is_file()):
                        self.findings.append(Finding(self._rel(entry.path), None, "label.orphan",
                                                     "no image of any split uses this label file"))

    def _split_stats(self, counts: dict[int, SplitCounts]) -> None:
        names = self.dataset.names
        for split in self.dataset.splits:
            split_counts = counts[SPLITS.index(split)]
            sizes = sorted(split_counts.sizes.items(), key=lambda item: (-item[1], item[0]))[:TOP_SIZES]
            self.splits[split] = {
                "images": split_counts.images, "backgrounds": split_counts.backgrounds,
                "instances": split_counts.instances,
                "instances_per_class": {name: split_counts.classes.get(i, 0) for i, name in enumerate(names)},
                "sizes": dict(sizes)}
        train = self.splits.get("train")
        if train and train["images"]:
            self.findings += [Finding(self.yaml_name, None, "class.no_train_instances",
                                      f"class {i} ({name}) has no instances in train")
                              for i, name in enumerate(names) if not train["instances_per_class"][name]]

    def _duplicates(self, hashes: list[tuple[str, int, str]]) -> None:
        groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for digest, split, image in hashes:
            groups[digest].append((split, image))
        for entries in groups.values():
            if len(entries) < 2:
                continue
            entries.sort()
            first_split, first = entries[0]
            for split, image in entries[1:]:
                if split == first_split:
                    self.findings.append(Finding(image, None, "image.duplicate", f"same content as {first}"))
                else:
                    self.findings.append(Finding(image, None, "image.split_leak",
                                                 f"same content as {first} in {SPLITS[first_split]}"))

    def _formats(self, box_files: list[tuple[str, int]], polygon_files: list[tuple[str, int]]) -> None:
        """The dataset's task is what most label files hold; the other kind is reported where it occurs."""
        minority, self.task, kind = box_files, "segment", "box"
        if len(box_files) >= len(polygon_files):
            minority, self.task, kind = polygon_files, "detect", "polygon"
        self.findings += [Finding(label, line, "label.inconsistent_format",
                                  f"a {kind} row, but most label files of this dataset are for {self.task}")
                          for label, line in minority]

    def _rel(self, path: str | Path) -> str:
        return _relative(path, self.root)


def _run_chunks(tasks: list, root: str, nc: int, hash_name: str, full_decode: bool,
                jobs: int | None) -> Iterator[ChunkSummary]:
    """Check the tasks in chunks across `jobs` processes, with a progress bar (counts and rate)."""
    # An explicit `jobs` is obeyed; by default small datasets stay in-process, where a pool costs more.
    parallel = jobs > 1 if jobs is not None else len(tasks) >= PARALLEL_FROM
    jobs = jobs or os.cpu_count() or 1
    size = max(8, min(512, len(tasks) // (jobs * 8)))
    chunks = [tasks[i:i + size] for i in range(0, len(tasks), size)]
    worker = partial(scan_chunk, root=root, nc=nc, hash_name=hash_name, full_decode=full_decode)
    show = sys.stderr.isatty() or len(tasks) >= PROGRESS_FROM
    if not parallel or jobs == 1:
        with _progress(len(tasks), show) as bar:
            for chunk, summary in zip(chunks, map(worker, chunks), strict=True):
                yield summary
                bar.update(len(chunk))
        return
    # fork: workers start at once with the modules already imported. The pool starts before tqdm's
    # monitor thread, so no thread is alive at fork time.
    with get_context("fork").Pool(jobs) as pool, _progress(len(tasks), show) as bar:
        for chunk, summary in zip(chunks, pool.imap(worker, chunks), strict=True):
            yield summary
            bar.update(len(chunk))


def _progress(total: int, show: bool) -> tqdm:
    return tqdm(total=total, unit="img", file=sys.stderr, disable=not show, mininterval=0.5, desc="validate",
                smoothing=0.1)


def _relative(path: str | Path, root: Path) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"

