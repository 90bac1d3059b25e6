"""The engine's prompts: what one object is told on one frame, and its model coordinates.

:class:`FramePrompt` is the engine's prompt record: all clicks, the box and the
mask prompt of one object on one frame, as the widget collects them and
:mod:`napari_sam2.engine.replay` sends them to a session. (A prompts *file* has
its own row records, :mod:`napari_sam2.files.prompt_files`.) :class:`PointPrompt`
is the session's internal, validated form of clicks.

Public coordinates are (row, col) in frame pixels. The model wants (x, y) in
model-input pixels, so points are swapped and scaled by image_size / (W, H).
Importing this module does not import torch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

POSITIVE, NEGATIVE = 1, 0
BOX_LABELS = (2, 3)  # top-left and bottom-right corner, as the model was trained


@dataclass(frozen=True)
class PointPrompt:
    """Points (N, 2) as float (row, col) and their int labels (N,)."""

    points: np.ndarray
    labels: np.ndarray

    @staticmethod
    def empty() -> PointPrompt:
        return PointPrompt(np.zeros((0, 2), np.float32), np.zeros((0,), np.int32))

    def __len__(self) -> int:
        return len(self.labels)

    def concat(self, other: PointPrompt) -> PointPrompt:
        return PointPrompt(
            np.concatenate([self.points, other.points]), np.concatenate([self.labels, other.labels])
        )


def check_points(points, labels, hw: tuple[int, int]) -> PointPrompt:
    """Validate clicks: (N, 2) (row, col) inside the frame, labels 0 or 1."""
    if points is None or labels is None:
        raise InputError("points: points and labels must be given together")
    try:
        pts = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"points: expected (N, 2) numbers as (row, col), got {points!r}") from None
    if pts.ndim == 1 and pts.shape == (2,):
        pts = pts[None]
    lab = np.asarray(labels).reshape(-1)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise InputError(f"points: expected shape (N, 2) as (row, col), got {pts.shape}")
    if len(pts) == 0:
        raise InputError("points: empty prompt; give at least one point")
    if len(lab) != len(pts):
        raise InputError(f"labels: {len(lab)} labels for {len(pts)} points")
    if not np.all(np.isin(lab, (NEGATIVE, POSITIVE))):
        raise InputError(
            f"labels: must be 1 (positive) or 0 (negative), got {sorted(set(lab.tolist()))}"
        )
    _check_inside(pts, hw, "points")
    return PointPrompt(pts.astype(np.float32), lab.astype(np.int32))


def box_to_points(box, hw: tuple[int, int]) -> PointPrompt:
    """(row0, col0, row1, col1) -> two corner points labelled 2 and 3."""
    try:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"box: expected 4 numbers (row0, col0, row1, col1), got {box!r}") from None
    if b.shape != (4,):
        raise InputError(f"box: expected (row0, col0, row1, col1), got shape {np.shape(box)}")
    r0, c0, r1, c1 = b
    corners = np.array([[min(r0, r1), min(c0, c1)], [max(r0, r1), max(c0, c1)]])
    _check_inside(corners, hw, "box")
    return PointPrompt(corners.astype(np.float32), np.array(BOX_LABELS, np.int32))


def _check_inside(pts: np.ndarray, hw: tuple[int, int], name: str) -> None:
    h, w = hw
    if not np.all(np.isfinite(pts)):
        raise InputError(f"{name}: coordinates must be finite")
    bad = (pts[:, 0] < 0) | (pts[:, 0] > h - 1) | (pts[:, 1] < 0) | (pts[:, 1] > w - 1)
    if bad.any():
        r, c = pts[np.argmax(bad)]
        raise InputError(
            f"{name}: ({r:g}, {c:g}) lies outside the frame of {h} x {w} (rows x cols)"
        )


def points_to_model(
    prompt: PointPrompt, hw: tuple[int, int], image_size: int, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """-> xy (1, N, 2) model-input (x, y) and labels (1, N) int32."""
    import torch

    h, w = hw
    xy = prompt.points[:, ::-1].astype(np.float32) / np.array([w, h], np.float32) * image_size
    return (
        torch.from_numpy(np.ascontiguousarray(xy))[None].to(device),
        torch.from_numpy(prompt.labels)[None].to(device),
    )


@dataclass(frozen=True, eq=False)
class FramePrompt:
    """All prompts of one object on one frame.

    ``points`` (N, 2) (row, col) with ``labels`` 1/0; ``box`` (row0, col0,
    row1, col1) or None; ``mask`` (H, W) bool or None. They are replayed in
    the order mask, box, clicks: each refines the one before.
    """

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None

    @property
    def empty(self) -> bool:
        return len(self.labels) == 0 and self.box is None and self.mask is None

    def signature(self) -> bytes:
        """A digest that changes whenever any prompt changes (to find edited frames)."""
        h = hashlib.sha1()
        h.update(np.round(np.asarray(self.points, np.float64), 3).tobytes())
        h.update(np.asarray(self.labels, np.int64).tobytes())
        h.update(repr(None if self.box is None else tuple(round(v, 3) for v in self.box)).encode())
        if self.mask is not None:
            h.update(repr(self.mask.shape).encode())
            h.update(np.packbits(self.mask.astype(bool)).tobytes())
        return h.digest()


def extends(before: FramePrompt, after: FramePrompt) -> bool:
    """True when ``after`` only adds clicks to ``before`` (same box, no mask, same earlier clicks)."""
    if before.mask is not None or after.mask is not None or before.box != after.box:
        return False
    n = len(before.labels)
    if n == 0 or len(after.labels) <= n:
        return False
    return bool(
        np.array_equal(after.labels[:n], before.labels)
        and np.allclose(after.points[:n], before.points, atol=1e-3)
    )
