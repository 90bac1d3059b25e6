"""Prompt points at bright blobs: one click near the middle of each fluorescent cell.

A uniform grid puts few prompts on small cells (16 x 16 points over a 256 px
frame with 12 nuclei: 13 of 256 points land on a cell) and many on background,
where a model trained on clicks inside cells still returns small junk masks.
Local maxima of the lightly smoothed image land near cell centres, which is
where a biologist would click, so the generator asks the model what it was
trained to answer.

Rule: smooth with a Gaussian of ``sigma`` pixels; keep local maxima at least
``min_distance`` pixels apart whose value exceeds the smoothed image's median
by ``threshold`` robust standard deviations (1.4826 x the median absolute
deviation). Multichannel images use the mean over channels. This suits bright
objects on a dark background (fluorescence); for other contrast use the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError

_MAD_TO_SD = 1.4826  # the MAD of a normal distribution times this is its SD


def grey(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 of ``image`` (H, W) or (H, W, C), channels averaged."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3:
        img = img.mean(axis=-1)
    if img.ndim != 2:
        raise InputError(f"image: expected (H, W) or (H, W, C), got shape {np.shape(image)}")
    return img


@dataclass(frozen=True)
class PeakPrompts:
    """Where :class:`~napari_sam2.tracking.MaskGenerator` clicks instead of a grid.

    sigma: Gaussian smoothing, pixels (about a quarter of a cell's diameter).
    min_distance: least distance between two prompts, pixels.
    threshold: how far above the median a peak must be, in robust SDs.
    """

    sigma: float = 2.0
    min_distance: int = 4
    threshold: float = 3.0

    def __post_init__(self) -> None:
        if not isinstance(self.sigma, (int, float)) or not self.sigma >= 0:
            raise InputError(f"sigma: must be a number >= 0, got {self.sigma!r}")
        md = self.min_distance
        if isinstance(md, bool) or not isinstance(md, (int, np.integer)) or md < 1:
            raise InputError(f"min_distance: must be a positive integer, got {md!r}")
        if not isinstance(self.threshold, (int, float)) or not np.isfinite(self.threshold):
            raise InputError(f"threshold: must be a finite number, got {self.threshold!r}")

    def smooth(self, image: np.ndarray) -> np.ndarray:
        """(H, W) float32: ``image`` (H, W[, C]; channels averaged) smoothed by ``sigma``."""
        img = grey(image)
        return ndimage.gaussian_filter(img, self.sigma) if self.sigma > 0 else img

    def find(self, image: np.ndarray) -> np.ndarray:
        """(N, 2) float32 (row, col) pixel centres of the peaks of ``image`` (H, W[, C]).

        Sorted brightest first; empty for a flat image.
        """
        return self.find_smoothed(self.smooth(image))

    def find_smoothed(self, smooth: np.ndarray) -> np.ndarray:
        """:meth:`find` on an image already passed through :meth:`smooth`."""
        median = float(np.median(smooth))
        spread = _MAD_TO_SD * float(np.median(np.abs(smooth - median)))
        if spread == 0.0:  # more than half the pixels share one value: use the SD
            spread = float(smooth.std())
        if spread == 0.0:
            return np.zeros((0, 2), np.float32)
        size = 2 * self.min_distance + 1
        is_max = smooth == ndimage.maximum_filter(smooth, size=size, mode="nearest")
        is_max &= smooth > median + self.threshold * spread
        # A plateau is one peak: its pixels are all maxima; take their centroid.
        components, n = ndimage.label(is_max, structure=np.ones((3, 3), bool))
        if n == 0:
            return np.zeros((0, 2), np.float32)
        index = np.arange(1, n + 1)
        centres = np.asarray(ndimage.center_of_mass(is_max, components, index), np.float64)
        heights = np.asarray(ndimage.maximum(smooth, components, index))
        order = np.argsort(-heights, kind="stable")
        # +0.5: the pixel's centre, as the grid's points are.
        return (centres[order] + 0.5).astype(np.float32)
