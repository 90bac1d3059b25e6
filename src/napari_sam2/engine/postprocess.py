"""Mask post-processing on every device (the reference needs a CUDA extension)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

_EIGHT = np.ones((3, 3), dtype=bool)


def fill_small_holes(logits: torch.Tensor, max_area: int, fill_value: float = 0.1) -> torch.Tensor:
    """Turn small background components into foreground.

    logits: (..., H, W). Every 8-connected component of pixels with logit <= 0
    whose area is at most ``max_area`` pixels gets ``fill_value`` (slightly
    positive), as SAM 2's video predictor does.
    """
    flat = logits.reshape(-1, *logits.shape[-2:])
    background = (flat <= 0).cpu().numpy()
    fill = np.zeros_like(background)
    for i, bg in enumerate(background):
        labels, n = ndimage.label(bg, structure=_EIGHT)
        if n == 0:
            continue
        areas = np.bincount(labels.ravel())
        small = areas <= max_area
        small[0] = False
        fill[i] = small[labels]
    if not fill.any():
        return logits
    mask = torch.from_numpy(fill).to(logits.device).reshape(logits.shape)
    return torch.where(mask, torch.as_tensor(fill_value, dtype=logits.dtype), logits)
