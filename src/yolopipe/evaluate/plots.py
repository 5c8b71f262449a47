"""Plot files of the evaluate stage: per-class curves as rows for `dvc plots`, and test images with boxes.

Class names are dataset-specific while dvc.yaml is static, so every curve is one file of rows
{class, x, y}, drawn by the committed template .dvc/plots/by_class.json that colours by class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yolopipe.dataset import label_path

CURVE_POINTS = 101  # Ultralytics samples 1000 points; 101 draw the same curve in a tenth of the bytes
TRUE_COLOUR, PREDICTED_COLOUR = (0, 170, 0), (230, 30, 30)


def class_curves(x: np.ndarray, curves: np.ndarray, class_ids, names: list[str], x_name: str,
                 y_name: str) -> list[dict]:
    """Rows {class, x_name, y_name} for each class with ground truth, then the mean over classes as 'all'."""
    curves = np.asarray(curves)
    if curves.size == 0:
        return []
    keep = np.linspace(0, len(x) - 1, CURVE_POINTS).round().astype(int)
    series = [(names[int(c)], curves[i]) for i, c in enumerate(class_ids)] + [("all", curves.mean(axis=0))]
    return [{"class": name, x_name: _round(x[i]), y_name: _round(curve[i])} for name, curve in series for i in keep]


def confusion_rows(matrix: np.ndarray, names: list[str]) -> list[dict]:
    """One row per counted detection, as DVC's confusion template wants. Ultralytics' matrix is
    [predicted, actual] with a last row/column for background (missed or spurious boxes)."""
    labels = [*names, "background"]
    rows = []
    for predicted, actual in zip(*np.nonzero(matrix), strict=True):
        rows += [{"actual": labels[actual], "predicted": labels[predicted]}] * int(matrix[predicted, actual])
    return rows


def draw_boxes(image: Path, predicted, names: list[str], target: Path, min_side: int = 320) -> None:
    """Save `image` as PNG with its true boxes (green) and predicted boxes (red, class and confidence).

    `predicted` holds rows x1, y1, x2, y2, confidence, class in pixels. Small images are enlarged by a whole
    factor so labels stay legible; PIL writes no timestamp, so the PNG bytes are reproducible."""
    from PIL import Image, ImageDraw, ImageOps

    picture = ImageOps.exif_transpose(Image.open(image)).convert("RGB")
    scale = max(1, -(-min_side // max(picture.size)))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    for class_id, box in _true_boxes(image, picture.width, picture.height):
        draw.rectangle(box, outline=TRUE_COLOUR, width=2)
        _label(draw, (box[0], box[3]), names[class_id], TRUE_COLOUR, above=True)
    for x1, y1, x2, y2, confidence, class_id in np.asarray(predicted, dtype=float).reshape(-1, 6):
        box = [round(v * scale) for v in (x1, y1, x2, y2)]
        draw.rectangle(box, outline=PREDICTED_COLOUR, width=2)
        _label(draw, (box[0], box[1]), f"{names[int(class_id)]} {confidence:.2f}", PREDICTED_COLOUR, above=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    picture.save(target, format="PNG")


def _label(draw, corner: tuple[int, int], text: str, colour, above: bool) -> None:
    """White text on a box-coloured tag: inside the bottom edge for true boxes, the top for predictions."""
    left, top, right, bottom = draw.textbbox((0, 0), text)
    x, y = corner[0], corner[1] - (bottom - top) - 4 if above else corner[1]
    draw.rectangle([x, y, x + right - left + 4, y + bottom - top + 4], fill=colour)
    draw.text((x + 2 - left, y + 2 - top), text, fill=(255, 255, 255))


def _true_boxes(image: Path, width: int, height: int):
    labels = label_path(image)
    if not labels.is_file():
        return
    for line in labels.read_text().splitlines():
        values = line.split()
        if len(values) != 5:  # polygons and blank lines: the box view only draws plain boxes
            continue
        class_id, (cx, cy, w, h) = int(values[0]), map(float, values[1:])
        yield class_id, [round((cx - w / 2) * width), round((cy - h / 2) * height),
                         round((cx + w / 2) * width), round((cy + h / 2) * height)]


def _round(value) -> float:
    return round(float(value), 5)
