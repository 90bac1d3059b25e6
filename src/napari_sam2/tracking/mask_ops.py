"""Mask utilities for automatic mask generation: grids, crops, scores, boxes, NMS.

Conventions: coordinates are (row, col); a box is ``(row0, col0, row1, col1)``
with *inclusive* last row/col (the bounding box of a mask's pixels), a crop is
``(row0, col0, row1, col1)`` with *exclusive* ends (a slice of the image).
Masks are dense boolean arrays, never run-length encoded.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

_EIGHT = np.ones((3, 3), dtype=bool)


def point_grid(n_per_side: int) -> np.ndarray:
    """(n*n, 2) points (row, col) in [0, 1], cell centres of an n x n grid, row-major."""
    offs = np.linspace(1 / (2 * n_per_side), 1 - 1 / (2 * n_per_side), n_per_side)
    rows = np.repeat(offs, n_per_side)
    cols = np.tile(offs, n_per_side)
    return np.stack([rows, cols], axis=-1)


def layer_point_grids(n_per_side: int, n_layers: int, downscale: int) -> list[np.ndarray]:
    """One grid per crop layer; layer i has ``int(n_per_side / downscale**i)`` points a side."""
    return [point_grid(int(n_per_side / downscale**i)) for i in range(n_layers + 1)]


def crop_boxes(
    hw: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[tuple[int, int, int, int]], list[int]]:
    """Crops (row0, col0, row1, col1), exclusive ends, and their layer index.

    Layer 0 is the whole image; layer i >= 1 tiles it with ``2**i`` x ``2**i``
    overlapping crops (overlap ``overlap_ratio`` of the short side, scaled by
    ``2 / 2**i``). Crops are listed column start first, then row start.
    """
    h, w = hw
    boxes, layers = [(0, 0, h, w)], [0]
    for layer in range(1, n_layers + 1):
        n = 2**layer
        overlap = int(overlap_ratio * min(h, w) * (2 / n))
        crop_h = int(math.ceil((overlap * (n - 1) + h) / n))
        crop_w = int(math.ceil((overlap * (n - 1) + w) / n))
        for c0 in (int((crop_w - overlap) * i) for i in range(n)):
            for r0 in (int((crop_h - overlap) * i) for i in range(n)):
                boxes.append((r0, c0, min(r0 + crop_h, h), min(c0 + crop_w, w)))
                layers.append(layer)
    return boxes, layers


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks ``logits > threshold + offset`` and ``logits > threshold - offset``.

    logits (N, H, W) -> (N,) float32. The first mask lies inside the second, so
    the IoU is the ratio of their areas; an empty outer mask gives NaN (it never
    passes a threshold).
    """
    inner = (logits > threshold + offset).flatten(1).sum(-1, dtype=torch.int32)
    outer = (logits > threshold - offset).flatten(1).sum(-1, dtype=torch.int32)
    return inner / outer


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Bounding boxes (N, 4) int64 (row0, col0, row1, col1), inclusive, of masks (N, H, W).

    An empty mask gets (0, 0, 0, 0).
    """
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros(0, 4, dtype=torch.int64, device=masks.device)
    rows = masks.any(-1)  # (N, H)
    cols = masks.any(-2)  # (N, W)
    r_idx = torch.arange(h, device=masks.device)
    c_idx = torch.arange(w, device=masks.device)
    row1 = torch.where(rows, r_idx, -1).amax(-1)
    row0 = torch.where(rows, r_idx, h).amin(-1)
    col1 = torch.where(cols, c_idx, -1).amax(-1)
    col0 = torch.where(cols, c_idx, w).amin(-1)
    boxes = torch.stack([row0, col0, row1, col1], dim=-1)
    empty = ~rows.any(-1)
    return torch.where(empty[:, None], torch.zeros_like(boxes), boxes)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) boxes -> (N,) areas ``(row1 - row0) * (col1 - col0)`` (corner-to-corner)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU (N, M) of boxes measured corner to corner (a zero-area pair gives NaN)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area_a[:, None] + area_b[None, :] - inter)


def box_nms(boxes, scores, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression.

    Boxes are visited by decreasing score (ties keep their input order); a box
    is dropped when its IoU with an already kept box exceeds ``iou_threshold``.
    Returns the kept indices (int64), best score first.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    iou = box_iou(boxes[order], boxes[order])
    suppressed = np.zeros(len(order), bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(order[i])
        suppressed |= iou[i] > iou_threshold
    return np.asarray(keep, np.int64)


def near_crop_edge(
    boxes: torch.Tensor, crop: tuple[int, int, int, int], hw: tuple[int, int], tol: float = 20.0
) -> torch.Tensor:
    """(N,) bool: a box (in crop coordinates) lies within ``tol`` pixels of an edge of
    the crop that is not also an edge of the image ``hw``."""
    r0, c0, _, _ = crop
    full = boxes.float() + torch.tensor([r0, c0, r0, c0], dtype=torch.float32, device=boxes.device)
    crop_t = torch.tensor(crop, dtype=torch.float32, device=boxes.device)
    image_t = torch.tensor([0, 0, hw[0], hw[1]], dtype=torch.float32, device=boxes.device)
    at_crop = (full - crop_t).abs() <= tol
    at_image = (full - image_t).abs() <= tol
    return (at_crop & ~at_image).any(-1)


def remove_small_regions(mask: np.ndarray, min_area: int) -> tuple[np.ndarray, bool]:
    """Fill holes and drop islands smaller than ``min_area`` pixels (8-connected).

    A mask whose islands are all small keeps its largest one. Returns the new
    (H, W) bool mask and whether anything changed.
    """
    mask = np.asarray(mask, bool)
    changed = False
    holes, n = ndimage.label(~mask, structure=_EIGHT)
    if n:
        sizes = np.bincount(holes.ravel())
        small = sizes < min_area
        small[0] = False
        if small.any():
            mask = mask | small[holes]
            changed = True
    islands, n = ndimage.label(mask, structure=_EIGHT)
    if n:
        sizes = np.bincount(islands.ravel())
        sizes[0] = 0
        keep = sizes >= min_area
        keep[0] = False
        if not keep.any():
            keep[int(np.argmax(sizes))] = True
        if not keep[1:].all():
            mask = keep[islands]
            changed = True
    return mask, changed
