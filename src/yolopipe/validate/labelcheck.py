"""Per-label-file checks: every row is a box or a polygon Ultralytics will accept, with a known class.

Rows are parsed with plain Python (a handful per file): faster than numpy at this size, and each problem
keeps its line number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Ultralytics accepts coordinates up to 1% outside [0, 1] (verify_image_label).
TOLERANCE = 0.01


@dataclass(frozen=True)
class LabelCheck:
    found: bool
    """False when the image has no label file (a background image)."""
    class_counts: tuple[tuple[int, int], ...]
    """(class id, instances) for rows whose class id is valid."""
    first_box_line: int | None
    first_polygon_line: int | None
    problems: tuple[tuple[str, int | None, str], ...]
    """(finding code, line, message) triples."""

    @property
    def instances(self) -> int:
        return sum(n for _, n in self.class_counts)


def check_label(path: str, nc: int) -> LabelCheck:
    """Check one label file against a dataset of `nc` classes."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        return LabelCheck(False, (), None, None, ())
    except OSError as exc:
        return LabelCheck(True, (), None, None, (("label.unreadable", None, f"cannot read: {exc.strerror}"),))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problem = ("label.unreadable", None, f"not UTF-8 text: {exc.reason}")
        return LabelCheck(True, (), None, None, (problem,))
    counts: dict[int, int] = {}
    problems: list[tuple[str, int | None, str]] = []
    seen: dict[tuple[float, ...], int] = {}
    first_box = first_polygon = None
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) == 5:
            first_box = first_box or number
        elif len(tokens) >= 7 and len(tokens) % 2:
            first_polygon = first_polygon or number
        else:
            problems.append(("label.bad_columns", number, f"{len(tokens)} values; expected 5 (class x y w h) "
                             "or a class and at least 3 x y points"))
            continue
        row = _check_row(tokens, number, nc, problems)
        if row is None:
            continue
        if row[0] is not None:
            counts[row[0]] = counts.get(row[0], 0) + 1
        if row[1] in seen:
            problems.append(("label.duplicate_row", number, f"the same row as line {seen[row[1]]}"))
        else:
            seen[row[1]] = number
    if first_box and first_polygon:
        later = max(first_box, first_polygon)
        problems.append(("label.mixed_formats", later, f"line {min(first_box, first_polygon)} is a "
                         f"{'box' if first_box < first_polygon else 'polygon'}, line {later} a "
                         f"{'polygon' if first_box < first_polygon else 'box'}"))
    return LabelCheck(True, tuple(sorted(counts.items())), first_box, first_polygon, tuple(problems))


def _check_row(tokens: list[str], number: int, nc: int,
               problems: list) -> tuple[int | None, tuple[float, ...]] | None:
    """Append the row's problems; return its valid class id (or None) and values, or None if unparsable."""
    try:
        values = tuple(map(float, tokens))
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        problems.append(("label.not_numeric", number, f"{bad!r} is not a number"))
        return None
    total = sum(values)
    if total - total != 0:  # only NaN or an infinity makes this non-zero: one sum, not a check per value
        bad = next(t for t, v in zip(tokens, values, strict=True) if not math.isfinite(v))
        problems.append(("label.not_finite", number, f"{bad!r} is not a finite number"))
        return None
    class_id = None
    if not values[0].is_integer():
        problems.append(("label.class_not_integer", number, f"class id {tokens[0]} is not a whole number"))
    elif not 0 <= values[0] < nc:
        message = f"class id {int(values[0])} is not in [0, {nc})"
        problems.append(("label.class_out_of_range", number, message))
    else:
        class_id = int(values[0])
    coords = values[1:]
    if min(coords) < -TOLERANCE or max(coords) > 1 + TOLERANCE:
        outside = [v for v in coords if v < -TOLERANCE or v > 1 + TOLERANCE]
        problems.append(("label.coord_out_of_range", number,
                         f"coordinate {outside[0]:g} is outside [0, 1] (normalised coordinates expected)"))
    if len(coords) == 4:
        width, height = coords[2], coords[3]
    else:
        width = max(coords[0::2]) - min(coords[0::2])
        height = max(coords[1::2]) - min(coords[1::2])
    if width <= 0 or height <= 0:
        message = f"width {width:g} and height {height:g} must be > 0"
        problems.append(("label.degenerate_box", number, message))
    return class_id, values


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True
