"""Held-out quality: a click at each cell's centre on the first frame, forward propagation.

Seeds at or above :attr:`TrainConfig.val_seed` are never drawn in training, so these
clips are unseen. The score is DAVIS J&F over the cells present on the first frame
(cells that enter later, or daughters, are not prompted and not scored).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..evaluation.metrics import jf_scores
from ..evaluation.synthetic import make_timelapse


def centre_click(mask: np.ndarray) -> tuple[float, float]:
    """(row, col) of the pixel deepest inside a mask: the centre a biologist would click."""
    depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(int(np.argmax(depth)), mask.shape)
    return float(r), float(c)


def first_frame_objects(labels: np.ndarray) -> list[int]:
    ids = np.unique(labels[0])
    return [int(i) for i in ids if i != 0]


def click_and_track(model, frames: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Predicted labels (T, H, W) from one centre click per first-frame cell, forward."""
    from ..engine.session import VideoSession

    with VideoSession(model, frames, spill=False) as session:
        for obj in first_frame_objects(labels):
            session.add_points(0, obj, [centre_click(labels[0] == obj)], [1])
        return session.segment(direction="forward", start_frame=0)


def scored_jf(pred: np.ndarray, labels: np.ndarray) -> float:
    """J&F over the first frame's cells only."""
    keep = first_frame_objects(labels)
    gt = np.where(np.isin(labels, keep), labels, 0)
    return jf_scores(pred, gt).JF_mean


def held_out_jf(
    model,
    snr: float = 4.0,
    seeds=(900_000, 900_001),
    n_frames: int = 12,
    n_cells: int = 12,
    shape=(256, 256),
) -> float:
    """Mean J&F over held-out synthetic clips at one SNR."""
    scores = []
    for seed in seeds:
        tl = make_timelapse(n_frames=n_frames, shape=shape, n_cells=n_cells, snr=snr, seed=seed)
        scores.append(scored_jf(click_and_track(model, tl.image, tl.labels), tl.labels))
    return float(np.mean(scores))
