"""Sample data for napari: the synthetic fluorescence time-lapse and z-stack.

Both come from :mod:`napari_sam2.evaluation.synthetic` with a fixed seed, so every user
(and every screenshot) sees the same cells.
"""

from __future__ import annotations

from ..evaluation.synthetic import make_timelapse, make_zstack


def sample_timelapse(
    n_frames: int = 40, shape: tuple[int, int] = (256, 256), seed: int = 0
) -> list[tuple]:
    """A noisy 16-bit 2D+t time-lapse of moving, dividing cells, as napari layer data."""
    data = make_timelapse(n_frames=n_frames, shape=shape, n_cells=12, snr=4.0, seed=seed)
    meta = {
        "name": "cells (time-lapse)",
        "colormap": "gray",
        "contrast_limits": _robust_limits(data.image),
        "axis_labels": ("t", "y", "x"),
        "metadata": {"napari_sam2_stack_axis": "time"},
    }
    return [(data.image, meta, "image")]


def sample_zstack(
    n_slices: int = 32, shape: tuple[int, int] = (128, 128), seed: int = 0
) -> list[tuple]:
    """A noisy 16-bit 3D z-stack of ellipsoidal cells, anisotropic voxels, as napari layer data."""
    data = make_zstack(n_slices=n_slices, shape=shape, n_cells=10, snr=4.0, seed=seed)
    meta = {
        "name": "cells (z-stack)",
        "colormap": "gray",
        "contrast_limits": _robust_limits(data.image),
        "scale": data.spacing,
        "axis_labels": ("z", "y", "x"),
        "metadata": {"napari_sam2_stack_axis": "z"},
    }
    return [(data.image, meta, "image")]


def _robust_limits(image) -> tuple[float, float]:
    """0.5 and 99.8 percentiles: camera noise and hot pixels do not wash out the view."""
    import numpy as np

    lo, hi = np.percentile(image, (0.5, 99.8))
    return float(lo), float(max(hi, lo + 1))
