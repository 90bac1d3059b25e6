"""Prompts simulated from ground truth, in model-input (x, y) pixels.

All functions take B objects' masks (B, S, S) as 0/1 tensors and return point
prompts xy (B, N, 2) float32 and labels (B, N) int32 (1 positive, 0 negative,
2/3 box corners, -1 no point), the model's own convention.
"""

from __future__ import annotations

import numpy as np
import torch

from ..modeling.prompt_encoder import NOT_A_POINT

BOX_NOISE = 0.1  # box corners move by up to this fraction of the box side ...
BOX_NOISE_MAX = 20.0  # ... and at most this many model pixels (reference values)


def _uniform_pixel(region: torch.Tensor, rng: np.random.Generator) -> tuple[float, float] | None:
    """(x, y) of a pixel drawn uniformly from a 0/1 (S, S) region, at its centre."""
    idx = torch.nonzero(region, as_tuple=False)
    if len(idx) == 0:
        return None
    r, c = idx[int(rng.integers(len(idx)))].tolist()
    return c + 0.5, r + 0.5


def clicks(masks: torch.Tensor, rng: np.random.Generator):
    """One positive click drawn uniformly inside each mask."""
    xy = torch.zeros(len(masks), 1, 2)
    labels = torch.full((len(masks), 1), NOT_A_POINT, dtype=torch.int32)
    for b, m in enumerate(masks):
        p = _uniform_pixel(m > 0, rng)
        if p is not None:
            xy[b, 0] = torch.tensor(p)
            labels[b, 0] = 1
    return xy, labels


def boxes(masks: torch.Tensor, rng: np.random.Generator):
    """The noisy bounding box of each mask as two corner points (labels 2, 3)."""
    size = masks.shape[-1]
    xy = torch.zeros(len(masks), 2, 2)
    labels = torch.full((len(masks), 2), NOT_A_POINT, dtype=torch.int32)
    for b, m in enumerate(masks):
        idx = torch.nonzero(m > 0, as_tuple=False)
        if len(idx) == 0:
            continue
        (r0, c0), (r1, c1) = idx.min(0).values.tolist(), (idx.max(0).values + 1).tolist()
        box = np.array([c0, r0, c1, r1], dtype=np.float64)
        side = np.array([c1 - c0, r1 - r0, c1 - c0, r1 - r0], dtype=np.float64)
        noise = np.minimum(side * BOX_NOISE, BOX_NOISE_MAX) * rng.uniform(-1, 1, 4)
        box = np.clip(box + noise, 0, size)
        x0, x1 = sorted((box[0], box[2]))
        y0, y1 = sorted((box[1], box[3]))
        xy[b] = torch.tensor([[x0, y0], [x1, y1]], dtype=torch.float32)
        labels[b] = torch.tensor([2, 3], dtype=torch.int32)
    return xy, labels


def corrections(
    gt: torch.Tensor, pred: torch.Tensor, rng: np.random.Generator, prob_from_gt: float
):
    """One corrective click per object, drawn uniformly from the error region.

    gt, pred: (B, S, S) 0/1. A pixel the prediction missed gives a positive click,
    a false positive a negative one. With probability ``prob_from_gt`` the click is
    drawn from the ground truth instead (positive), as in the reference recipe. An
    object with no error and no ground truth gets no point (label -1).
    """
    xy = torch.zeros(len(gt), 1, 2)
    labels = torch.full((len(gt), 1), NOT_A_POINT, dtype=torch.int32)
    for b in range(len(gt)):
        g, p = gt[b] > 0, pred[b] > 0
        if rng.random() < prob_from_gt:
            region, positive = g, True
            point = _uniform_pixel(region, rng)
        else:
            error = g ^ p
            point = _uniform_pixel(error, rng)
            positive = point is not None and bool(g[int(point[1]), int(point[0])])
        if point is None:
            point, positive = _uniform_pixel(g, rng), True
        if point is not None:
            xy[b, 0] = torch.tensor(point)
            labels[b, 0] = 1 if positive else 0
    return xy, labels
