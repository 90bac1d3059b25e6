"""Per (frame, object) signals of how trustworthy a tracked mask is.

All come from what the engine computes anyway (:class:`~napari_sam2.video.FrameResult`)
plus cheap measurements of the mask itself: no extra model pass. Masks are the
per-object ``logits > 0`` at the frame's resolution, measured inside each object's
crop (:meth:`~napari_sam2.video.FrameResult.object_logits`); areas are in pixels and
centroids in (row, col) pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["MaskShape", "ObjectSignals", "SignalTracker", "mask_shape", "object_signals"]


@dataclass(frozen=True)
class MaskShape:
    """The size and place of one mask: ``area`` (pixels), ``centroid`` (row, col), or None when empty."""

    area: int
    centroid: tuple[float, float] | None


@dataclass(frozen=True)
class ObjectSignals:
    """What is known about one object's mask on one frame. ``None``: not available.

    Attributes:
        frame, obj_id: where.
        predicted_iou: the decoder's own IoU estimate of the mask, [0, 1].
        object_score: the decoder's logit of the object being present.
        stability: IoU of the mask thresholded at logit +1 and -1, [0, 1].
        area: mask area, pixels.
        area_jump: |a - a_prev| / max(a, a_prev) against the previous frame in
            tracking order, [0, 1] (0 when both are empty).
        centroid_jump: centroid displacement against the previous frame in
            units of the larger mask's equivalent diameter (sqrt(4 a / pi));
            None when either mask is empty.
        components: connected components of the mask (8-connectivity).
        largest_share: the largest component's share of the area, [0, 1] (1 when empty).
        disagreement: 1 - IoU of this mask with the other direction's mask on the
            same frame, where a pass in the other direction exists.
        overlap: the share of this mask that other objects' masks also claim,
            [0, 1] (0 when empty): a tracked object that lost its cell and
            latched onto a neighbour's sits under that neighbour's mask.
    """

    frame: int
    obj_id: int
    predicted_iou: float | None = None
    object_score: float | None = None
    stability: float | None = None
    area: int = 0
    area_jump: float | None = None
    centroid_jump: float | None = None
    components: int = 0
    largest_share: float = 1.0
    disagreement: float | None = None
    overlap: float = 0.0


_EIGHT = np.ones((3, 3), bool)


def mask_shape(mask: np.ndarray, origin: tuple[int, int] = (0, 0)) -> MaskShape:
    """Area and centroid of a boolean mask whose pixel (0, 0) is at ``origin`` (row, col)."""
    area = int(mask.sum())
    if area == 0:
        return MaskShape(0, None)
    rows, cols = np.nonzero(mask)
    return MaskShape(area, (float(rows.mean()) + origin[0], float(cols.mean()) + origin[1]))


def _fragments(mask: np.ndarray) -> tuple[int, float]:
    """(number of 8-connected components, largest component's share of the area)."""
    labels, n = ndimage.label(mask, structure=_EIGHT)
    if n <= 1:
        return n, 1.0
    sizes = np.bincount(labels.ravel())[1:]
    return n, float(sizes.max() / sizes.sum())


def _jumps(shape: MaskShape, prev: MaskShape | None) -> tuple[float | None, float | None]:
    if prev is None:
        return None, None
    big = max(shape.area, prev.area)
    area_jump = 0.0 if big == 0 else abs(shape.area - prev.area) / big
    if shape.centroid is None or prev.centroid is None:
        return area_jump, None
    diameter = math.sqrt(4.0 * big / math.pi)
    dist = math.dist(shape.centroid, prev.centroid)
    return area_jump, dist / diameter


def _overlaps(masks, shape: tuple[int, int]) -> list[float]:
    """For each ``(rows, cols, mask)`` crop (slices into the (H, W) frame, boolean
    crop), the share of its pixels that any other crop's mask also covers."""
    count = np.zeros(shape, np.int32)  # how many masks claim each pixel
    for rows, cols, mask in masks:
        count[rows, cols] += mask
    out = []
    for rows, cols, mask in masks:
        area = int(mask.sum())
        shared = int((mask & (count[rows, cols] > 1)).sum())
        out.append(shared / area if area else 0.0)
    return out


def _finite(values, i: int) -> float | None:
    if values is None:
        return None
    v = float(values[i])
    return v if math.isfinite(v) else None


def object_signals(
    result,
    previous: dict[int, MaskShape] | None = None,
    other_labels: np.ndarray | None = None,
) -> tuple[list[ObjectSignals], dict[int, MaskShape]]:
    """Signals of every object of one :class:`~napari_sam2.video.FrameResult`.

    ``previous``: the objects' shapes on the previous frame in tracking order
    (None on the first frame of a pass). ``other_labels``: an (H, W) label image
    of the same frame from a pass in the other direction, for the
    forward/backward disagreement. Returns the signals (in ``result.obj_ids``
    order) and this frame's shapes, to pass on as the next ``previous``.
    """
    previous = previous or {}
    other_area: dict[int, int] = {}
    if other_labels is not None:
        other_labels = np.asarray(other_labels)
        ids, counts = np.unique(other_labels, return_counts=True)
        other_area = dict(zip(ids.tolist(), counts.tolist(), strict=True))
    signals, shapes = [], {}
    # Only the crop where an object can be is upsampled (FrameResult.object_logits).
    crops = []
    for i in range(len(result.obj_ids)):
        rows, cols, crop = result.object_logits(i)
        crops.append((rows, cols, crop > 0))
    overlaps = _overlaps(crops, result.shape)
    for i, obj in enumerate(result.obj_ids):
        rows, cols, mask = crops[i]
        shape = mask_shape(mask, (rows.start, cols.start))
        shapes[obj] = shape
        area_jump, centroid_jump = _jumps(shape, previous.get(obj))
        n, share = _fragments(mask) if shape.area else (0, 1.0)
        disagreement = None
        if other_labels is not None:
            inter = int((mask & (other_labels[rows, cols] == obj)).sum())
            union = shape.area + other_area.get(int(obj), 0) - inter
            disagreement = 0.0 if union == 0 else 1.0 - inter / union
        signals.append(
            ObjectSignals(
                frame=int(result.frame),
                obj_id=int(obj),
                predicted_iou=_finite(getattr(result, "predicted_ious", None), i),
                object_score=_finite(result.object_scores, i),
                stability=_finite(getattr(result, "stability_scores", None), i),
                area=shape.area,
                area_jump=area_jump,
                centroid_jump=centroid_jump,
                components=n,
                largest_share=share,
                disagreement=disagreement,
                overlap=overlaps[i],
            )
        )
    return signals, shapes


class SignalTracker:
    """Signals over a propagation, frame by frame, in either direction.

    Keeps every frame's object shapes (a few numbers each), so the previous
    frame in tracking order (``frame - 1`` forward, ``frame + 1`` in reverse)
    is found even across passes and re-propagations.
    """

    def __init__(self) -> None:
        self._shapes: dict[int, dict[int, MaskShape]] = {}

    def observe(
        self, result, reverse: bool = False, other_labels: np.ndarray | None = None
    ) -> list[ObjectSignals]:
        """Signals of one frame's result; ``other_labels`` as in :func:`object_signals`."""
        prev = self._shapes.get(result.frame + (1 if reverse else -1))
        signals, shapes = object_signals(result, prev, other_labels)
        self._shapes[result.frame] = shapes
        return signals

    def forget(self) -> None:
        self._shapes.clear()
