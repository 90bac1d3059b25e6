"""The prompts file format, shared by the napari widget and the ``napari-sam2`` CLI.

Three files, each optional, make a set of prompts (a saved widget session folder
holds them next to ``labels.tif`` and ``session.json``):

``points.csv``
    Header ``frame,row,col,label,object``: one click per line, ``label`` 1
    (positive) or 0 (negative), ``object`` the integer object id (>= 1). napari's
    own Points layer CSV export is read too: ``index,axis-0,axis-1,axis-2`` plus
    the feature columns ``label`` and ``object`` (``axis-0`` is the frame of a
    (T, H, W) layer; a 2D layer's points are on frame 0).
``boxes.csv``
    Header ``frame,row0,col0,row1,col1,object``: one box per line, two opposite
    corners.
``mask_prompts.tif``
    A (T, H, W) integer label TIFF: a nonzero value ``v`` at frame ``t`` means
    object ``v`` has a mask prompt on frame ``t``. All-zero frames carry none.

Coordinates are (row, col) in frame pixels (float; pixel centres are integers)
and frames are 0-based. Columns may come in any order, extra columns are
ignored, and blank lines are skipped. Every problem with a file raises
:class:`~napari_sam2.errors.InputError` with one line naming the file, the line
number and the column.

Label TIFFs are read and written by :mod:`napari_sam2.files.tiff`; prompts are
sent to a session by :mod:`napari_sam2.engine.replay`. This module imports
neither torch nor Qt.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .atomic import atomic_path
from .tiff import MAX_ID, check_label_volume, read_label_tiff, write_label_tiff

__all__ = [
    "BOXES_COLUMNS",
    "BOXES_FILE",
    "MASKS_FILE",
    "POINTS_COLUMNS",
    "POINTS_FILE",
    "BoxRow",
    "PointRow",
    "Prompts",
    "check_prompts",
    "mask_frames",
    "read_boxes_csv",
    "read_mask_prompts",
    "read_points_csv",
    "read_prompts",
    "select_frames",
    "write_boxes_csv",
    "write_points_csv",
    "write_prompts",
]

POINTS_COLUMNS = ("frame", "row", "col", "label", "object")
BOXES_COLUMNS = ("frame", "row0", "col0", "row1", "col1", "object")
POINTS_FILE, BOXES_FILE, MASKS_FILE = "points.csv", "boxes.csv", "mask_prompts.tif"

_NAPARI_AXES = ("axis-0", "axis-1", "axis-2")


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class PointRow:
    """One click: ``frame`` index, (``row``, ``col``) in pixels, ``label`` 1/0, object id."""

    frame: int
    row: float
    col: float
    label: int
    obj: int


@dataclass(frozen=True)
class BoxRow:
    """One box on ``frame``: corners (``row0``, ``col0``) and (``row1``, ``col1``) in pixels."""

    frame: int
    row0: float
    col0: float
    row1: float
    col1: float
    obj: int

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(row0, col0, row1, col1), the form ``VideoSession.add_box`` takes."""
        return (self.row0, self.col0, self.row1, self.col1)


@dataclass(frozen=True, eq=False)
class Prompts:
    """All prompts of a stack.

    ``points`` and ``boxes`` keep file order (it is the order they are applied
    in). ``masks`` is ``None`` or a (T, H, W) integer array of object ids (may be
    a read-only memory map).
    """

    points: tuple[PointRow, ...] = ()
    boxes: tuple[BoxRow, ...] = ()
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Frozen, so normalise through object.__setattr__: lists become tuples and
        # a mask volume is checked once here rather than at every use.
        object.__setattr__(self, "points", tuple(self.points))
        object.__setattr__(self, "boxes", tuple(self.boxes))
        if self.masks is not None:
            object.__setattr__(self, "masks", check_label_volume(self.masks, "masks"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Prompts):
            return NotImplemented
        if self.points != other.points or self.boxes != other.boxes:
            return False
        if self.masks is None or other.masks is None:
            return self.masks is None and other.masks is None
        return self.masks.shape == other.masks.shape and np.array_equal(self.masks, other.masks)

    __hash__ = None  # type: ignore[assignment]  # holds an array

    @property
    def is_empty(self) -> bool:
        return not self.points and not self.boxes and not mask_frames(self.masks)

    def obj_ids(self) -> tuple[int, ...]:
        """The object ids prompted anywhere, ascending (scans the mask volume)."""
        ids = {p.obj for p in self.points} | {b.obj for b in self.boxes}
        for t in mask_frames(self.masks):
            ids.update(int(v) for v in np.unique(self.masks[t]) if v)
        return tuple(sorted(ids))

    def frames(self) -> tuple[int, ...]:
        """The frames holding at least one prompt, ascending."""
        found = {p.frame for p in self.points} | {b.frame for b in self.boxes}
        return tuple(sorted(found | set(mask_frames(self.masks))))


def mask_frames(masks: np.ndarray | None) -> list[int]:
    """Frames of a (T, H, W) mask-prompt volume that are not all zero.

    Reads one frame at a time, so a memory-mapped volume is never loaded whole.
    """
    if masks is None:
        return []
    return [t for t in range(masks.shape[0]) if np.any(masks[t])]


# --------------------------------------------------------------------------- CSV reading


def _read_table(path: str | os.PathLike) -> tuple[Path, list[str], list[tuple[int, list[str]]]]:
    """A CSV file -> (path, lower-cased header names, [(line number, cells)])."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a CSV file" if path.is_dir() else "no such file"
        raise InputError(f"{path}: {what}")
    try:
        # utf-8-sig: spreadsheets often prepend a byte-order mark.
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            lines = [(reader.line_num, cells) for cells in reader]
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text CSV file (cannot decode it as UTF-8)") from None
    except csv.Error as exc:
        raise InputError(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    lines = [(n, [c.strip() for c in cells]) for n, cells in lines if any(c.strip() for c in cells)]
    if not lines:
        raise InputError(f"{path}: the file is empty (expected a header line)")
    (header_line, header), rows = lines[0], lines[1:]
    header = [h.lower() for h in header]
    seen = set()
    for h in header:
        if h in seen:
            raise InputError(
                f"{path}: line {header_line}: column '{h}' appears twice in the header"
            )
        seen.add(h)
    for n, cells in rows:
        if len(cells) != len(header):
            raise InputError(
                f"{path}: line {n}: {len(cells)} values for the {len(header)} header columns"
            )
    return path, header, rows


def _require(path: Path, header: list[str], columns: Iterable[str], kind: str) -> dict[str, int]:
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError(
            f"{path}: line 1: {kind} header lacks column '{missing[0]}' "
            f"(found: {','.join(header)}; expected: {','.join(columns)})"
        )
    return {c: header.index(c) for c in columns}


class _Cells:
    """Typed access to one CSV line; each failure names file, line and column."""

    def __init__(self, path: Path, line: int, cells: list[str], index: dict[str, int]):
        self.path, self.line, self.cells, self.index = path, line, cells, index

    def fail(self, column: str, what: str) -> InputError:
        return InputError(f"{self.path}: line {self.line}, column '{column}': {what}")

    def text(self, column: str) -> str:
        return self.cells[self.index[column]]

    def number(self, column: str, what: str = "a number") -> float:
        text = self.text(column)
        try:
            value = float(text)
        except ValueError:
            raise self.fail(column, f"expected {what}, got {text!r}") from None
        if not math.isfinite(value):
            raise self.fail(column, f"expected a finite {what}, got {text!r}")
        return value

    def coordinate(self, column: str) -> float:
        value = self.number(column, "a pixel coordinate")
        if value < 0:
            raise self.fail(column, f"coordinate {value:g} lies outside the image (< 0)")
        return value

    def integer(self, column: str, what: str) -> int:
        text = self.text(column)
        try:
            return int(text)
        except ValueError:
            pass
        # napari's CSV writer stores every column as float ("3.0"); accept exact integers.
        try:
            value = float(text)
        except ValueError:
            raise self.fail(column, f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or abs(value - round(value)) > 1e-6:
            raise self.fail(column, f"expected {what}, got {text!r}")
        return int(round(value))

    def frame(self, column: str) -> int:
        value = self.integer(column, "an integer frame index")
        if value < 0:
            raise self.fail(column, f"frame index {value} is negative")
        return value

    def obj(self, column: str = "object") -> int:
        value = self.integer(column, "an integer object id")
        if not 1 <= value <= MAX_ID:
            raise self.fail(column, f"object id {value} is not in 1..{MAX_ID} (0 is background)")
        return value

    def label(self, column: str = "label") -> int:
        text = self.text(column).lower()
        if text in ("true", "false"):  # napari writes boolean features as True/False
            return int(text == "true")
        value = self.integer(column, "1 (positive) or 0 (negative)")
        if value not in (0, 1):
            raise self.fail(column, f"expected 1 (positive) or 0 (negative), got {value}")
        return value


def _points_from_table(path: Path, header: list[str], rows) -> tuple[PointRow, ...]:
    if "axis-0" in header:
        return _napari_points(path, header, rows)
    index = _require(path, header, POINTS_COLUMNS, "points")
    out = []
    for n, cells in rows:
        c = _Cells(path, n, cells, index)
        out.append(
            PointRow(c.frame("frame"), c.coordinate("row"), c.coordinate("col"), c.label(), c.obj())
        )
    return tuple(out)


def _napari_points(path: Path, header: list[str], rows) -> tuple[PointRow, ...]:
    """napari's Points CSV: ``index,axis-0,...`` and feature columns (any order)."""
    axes = [h for h in header if h.startswith("axis-")]
    if axes not in ([*_NAPARI_AXES[:2]], [*_NAPARI_AXES]):
        raise InputError(
            f"{path}: line 1: napari points with axes {','.join(axes)}; expected axis-0,axis-1,"
            "axis-2 (frame, row, col) of a (T, H, W) layer, or axis-0,axis-1 of a 2D one"
        )
    index = _require(path, header, [*axes, "label", "object"], "napari points")
    out = []
    for n, cells in rows:
        c = _Cells(path, n, cells, index)
        if len(axes) == 3:
            frame, row, col = c.frame("axis-0"), c.coordinate("axis-1"), c.coordinate("axis-2")
        else:  # a 2D layer: a single image, frame 0
            frame, row, col = 0, c.coordinate("axis-0"), c.coordinate("axis-1")
        out.append(PointRow(frame, row, col, c.label(), c.obj()))
    return tuple(out)


def _boxes_from_table(path: Path, header: list[str], rows) -> tuple[BoxRow, ...]:
    index = _require(path, header, BOXES_COLUMNS, "boxes")
    out = []
    for n, cells in rows:
        c = _Cells(path, n, cells, index)
        corners = [c.coordinate(k) for k in ("row0", "col0", "row1", "col1")]
        out.append(BoxRow(c.frame("frame"), *corners, c.obj()))
    return tuple(out)


def read_points_csv(path: str | os.PathLike) -> tuple[PointRow, ...]:
    """Clicks from ``frame,row,col,label,object`` or a napari Points CSV export, in file order."""
    return _points_from_table(*_read_table(path))


def read_boxes_csv(path: str | os.PathLike) -> tuple[BoxRow, ...]:
    """Boxes from a ``frame,row0,col0,row1,col1,object`` CSV, in file order."""
    return _boxes_from_table(*_read_table(path))


# --------------------------------------------------------------------------- CSV writing


def _fmt(value: float) -> str:
    # Whole pixel positions stay "12", not "12.0"; others keep full float precision.
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _write_csv(path: str | os.PathLike, header, lines) -> None:
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(lines)


def write_points_csv(path: str | os.PathLike, rows: Iterable[PointRow]) -> None:
    """Write clicks as ``frame,row,col,label,object`` (atomically: all or nothing)."""
    lines = [(int(p.frame), _fmt(p.row), _fmt(p.col), int(p.label), int(p.obj)) for p in rows]
    _write_csv(path, POINTS_COLUMNS, lines)


def write_boxes_csv(path: str | os.PathLike, rows: Iterable[BoxRow]) -> None:
    """Write boxes as ``frame,row0,col0,row1,col1,object`` (atomically)."""
    lines = [
        (int(b.frame), *(_fmt(v) for v in (b.row0, b.col0, b.row1, b.col1)), int(b.obj))
        for b in rows
    ]
    _write_csv(path, BOXES_COLUMNS, lines)


def read_mask_prompts(path: str | os.PathLike) -> np.ndarray:
    """``mask_prompts.tif`` -> (T, H, W) integer object ids, memory-mapped when possible."""
    masks = read_label_tiff(path, mmap=True)
    for t in range(masks.shape[0]):
        plane = masks[t]
        if plane.size and plane.min() < 0:
            raise InputError(f"{path}: frame {t} holds negative object id {plane.min()}")
        if plane.size and plane.max() > MAX_ID:
            raise InputError(f"{path}: frame {t} holds object id {plane.max()} > {MAX_ID}")
    return masks


# --------------------------------------------------------------------------- files and folders


def read_prompts(path_or_folder: str | os.PathLike) -> Prompts:
    """Read prompts from one file or a session folder.

    A ``.csv`` file holds points or boxes (told apart by the header); a ``.tif``
    file holds mask prompts; a folder holds any of ``points.csv``,
    ``boxes.csv`` and ``mask_prompts.tif``.
    """
    path = Path(path_or_folder)
    if path.is_dir():
        files = [path / POINTS_FILE, path / BOXES_FILE, path / MASKS_FILE]
        if not any(f.exists() for f in files):
            raise InputError(f"{path}: holds none of {POINTS_FILE}, {BOXES_FILE}, {MASKS_FILE}")
        points = read_points_csv(files[0]) if files[0].exists() else ()
        boxes = read_boxes_csv(files[1]) if files[1].exists() else ()
        masks = read_mask_prompts(files[2]) if files[2].exists() else None
        return Prompts(points, boxes, masks)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.suffix.lower() in (".tif", ".tiff"):
        return Prompts(masks=read_mask_prompts(path))
    path, header, rows = _read_table(path)
    if "row0" in header:
        return Prompts(boxes=_boxes_from_table(path, header, rows))
    if "row" in header or "axis-0" in header:
        return Prompts(points=_points_from_table(path, header, rows))
    raise InputError(
        f"{path}: line 1: header {','.join(header)} is neither points "
        f"({','.join(POINTS_COLUMNS)}) nor boxes ({','.join(BOXES_COLUMNS)})"
    )


def write_prompts(folder: str | os.PathLike, prompts: Prompts) -> None:
    """Write ``points.csv``, ``boxes.csv`` and (with masks) ``mask_prompts.tif`` into ``folder``.

    Both CSV files are always written (header only when empty). Without masks a
    stale ``mask_prompts.tif`` is removed, so reading the folder back gives
    exactly ``prompts``. Other files in the folder are left alone.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    write_points_csv(folder / POINTS_FILE, prompts.points)
    write_boxes_csv(folder / BOXES_FILE, prompts.boxes)
    if prompts.masks is not None:
        write_label_tiff(folder / MASKS_FILE, prompts.masks)
    else:
        (folder / MASKS_FILE).unlink(missing_ok=True)


# --------------------------------------------------------------------------- checking and applying


def _describe_point(p: PointRow) -> str:
    return f"point (frame {p.frame}, row {p.row:g}, col {p.col:g}, object {p.obj})"


def _describe_box(b: BoxRow) -> str:
    return (
        f"box (frame {b.frame}, rows {b.row0:g}..{b.row1:g}, "
        f"cols {b.col0:g}..{b.col1:g}, object {b.obj})"
    )


def check_prompts(prompts: Prompts, num_frames: int, frame_shape: tuple[int, int]) -> None:
    """Check that every prompt fits a stack of ``num_frames`` frames of (H, W) pixels.

    A prompt on a frame that does not exist, a point or box corner outside
    [0, H-1] x [0, W-1], or a mask volume of another shape raises InputError.
    """
    h, w = frame_shape

    def inside(r: float, c: float) -> bool:
        return 0 <= r <= h - 1 and 0 <= c <= w - 1

    items = [(p.frame, _describe_point(p), [(p.row, p.col)]) for p in prompts.points]
    items += [
        (b.frame, _describe_box(b), [(b.row0, b.col0), (b.row1, b.col1)]) for b in prompts.boxes
    ]
    for frame, what, corners in items:
        if not 0 <= frame < num_frames:
            raise InputError(
                f"prompts: {what} is on a frame that does not exist "
                f"(the stack has frames 0..{num_frames - 1})"
            )
        if not all(inside(r, c) for r, c in corners):
            raise InputError(
                f"prompts: {what} lies outside the image of {h} x {w} pixels (rows x cols)"
            )
    if prompts.masks is not None and tuple(prompts.masks.shape) != (num_frames, h, w):
        raise InputError(
            f"prompts: mask prompts have shape {tuple(prompts.masks.shape)}, "
            f"the stack is {(num_frames, h, w)} (T, H, W)"
        )


def select_frames(prompts: Prompts, start: int, stop: int) -> Prompts:
    """The prompts of frames ``start..stop-1``, re-indexed so that ``start`` is frame 0.

    Raises InputError for a prompt outside the range: dropping it silently
    would change the result without telling anyone.
    """
    if not 0 <= start < stop:
        raise InputError(f"frames: empty or negative frame range {start}:{stop}")

    def keep(frame: int, what: str) -> None:
        if not start <= frame < stop:
            raise InputError(f"prompts: {what} lies outside the selected frames {start}:{stop}")

    for p in prompts.points:
        keep(p.frame, _describe_point(p))
    for b in prompts.boxes:
        keep(b.frame, _describe_box(b))
    masks = prompts.masks
    if masks is not None:
        for t in mask_frames(masks):
            keep(t, f"mask prompt on frame {t}")
        masks = masks[start:stop]
    return Prompts(
        tuple(PointRow(p.frame - start, p.row, p.col, p.label, p.obj) for p in prompts.points),
        tuple(
            BoxRow(b.frame - start, b.row0, b.col0, b.row1, b.col1, b.obj) for b in prompts.boxes
        ),
        masks,
    )
