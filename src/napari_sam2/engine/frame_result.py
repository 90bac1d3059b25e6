"""One frame's predictions for every object, upsampled only where an object can be.

The engine's masks come out at a quarter of the model's input size (``low_res``).
Upsampling every object to the full frame just to build one label image costs
N x H x W floats per frame: 100 cells at 1024 px would be 400 MB a frame. A
bilinear upsampling is a convex combination of at most four low-res values, so
an object's full-resolution logit can be > 0 only next to a low-res pixel that is
> 0. :class:`FrameResult` therefore keeps the low-res logits and upsamples each
object inside that neighbourhood only (:meth:`FrameResult.object_logits`); the
label image, the per-object masks and the review signals all work from those
crops. ``logits`` still gives the full (N, H, W) array, computed on demand, for
callers that want it (parity tests, small stacks).

The crops are exact: the upsampling is written as ``Ry @ low @ Rx.T`` with the
bilinear weights of ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)``, and a crop takes rows of ``Ry`` and ``Rx``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["FrameResult", "bilinear_weights"]


@lru_cache(maxsize=16)
def bilinear_weights(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) float32 matrix of 1-D bilinear upsampling weights.

    Matches ``interpolate(..., mode="bilinear", align_corners=False)``: output
    pixel ``i`` samples the input at ``(i + 0.5) * n_in / n_out - 0.5``, clamped
    at 0 and at the last pixel.
    """
    # In float32, as torch computes the source index on the CPU.
    scale = np.float32(n_in) / np.float32(n_out)
    src = scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    w = np.zeros((n_out, n_in), np.float32)
    rows = np.arange(n_out)
    np.add.at(w, (rows, i0), np.float32(1.0) - frac)
    np.add.at(w, (rows, i1), frac)
    w.setflags(write=False)
    return w


def _support(weights: np.ndarray, lo: int, hi: int) -> slice:
    """Output pixels whose weights touch input pixels ``lo..hi`` (inclusive)."""
    touched = np.flatnonzero(weights[:, lo : hi + 1].any(axis=1))
    return slice(int(touched[0]), int(touched[-1]) + 1)


@dataclass(frozen=True, eq=False)
class FrameResult:
    """All objects' predictions on one frame.

    ``mask_logits``: (N, h, w) float32 mask logits, one per id in ``obj_ids``
    (-1024 where an object has no prediction on this frame), at the model's
    low resolution; ``frame_shape``: the frame's (H, W) in pixels (None: the
    logits are already at the frame's size). ``object_scores``: (N,) logits of
    the object being present. ``predicted_ious`` and ``stability_scores``: (N,)
    float32 in [0, 1], the decoder's predicted IoU of each object's mask and the
    mask's stability score (:func:`~napari_sam2.modeling.sam2.stability_score`);
    NaN where the model gave none (no prediction, or a mask prompt taken as is).
    None when not computed.
    """

    frame: int
    obj_ids: tuple[int, ...]
    mask_logits: np.ndarray
    object_scores: np.ndarray
    predicted_ious: np.ndarray | None = None
    stability_scores: np.ndarray | None = None
    frame_shape: tuple[int, int] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """The frame's (H, W)."""
        if self.frame_shape is not None:
            return tuple(self.frame_shape)
        return tuple(np.shape(self.mask_logits)[1:])

    @property
    def logits(self) -> np.ndarray:
        """(N, H, W) float32 logits at the frame's size, computed on each call (N x H x W floats)."""
        low = np.asarray(self.mask_logits, np.float32)
        if low.shape[1:] == self.shape or len(low) == 0:
            return low.reshape(len(low), *self.shape)
        t = torch.from_numpy(np.ascontiguousarray(low))[:, None]
        return F.interpolate(t, self.shape, mode="bilinear", align_corners=False)[:, 0].numpy()

    @property
    def masks(self) -> np.ndarray:
        """(N, H, W) bool."""
        return self.logits > 0

    def object_logits(self, i: int) -> tuple[slice, slice, np.ndarray]:
        """Object ``i``'s logits where they can be > 0: ``(rows, cols, crop)``.

        ``crop`` equals ``logits[i][rows, cols]``; every pixel outside it has a
        logit <= 0. Empty slices and a (0, 0) crop when the object has no
        positive pixel.
        """
        low = np.asarray(self.mask_logits[i], np.float32)
        pos = np.argwhere(low > 0)
        if len(pos) == 0:
            return slice(0, 0), slice(0, 0), np.zeros((0, 0), np.float32)
        (a0, b0), (a1, b1) = pos.min(0), pos.max(0)
        if low.shape == self.shape:  # already at the frame's size: the bounding box
            rows, cols = slice(a0, a1 + 1), slice(b0, b1 + 1)
            return rows, cols, low[rows, cols]
        ry = bilinear_weights(self.shape[0], low.shape[0])
        rx = bilinear_weights(self.shape[1], low.shape[1])
        rows, cols = _support(ry, a0, a1), _support(rx, b0, b1)
        return rows, cols, ry[rows] @ low @ rx[cols].T

    def object_mask(self, i: int) -> np.ndarray:
        """(H, W) bool mask of object ``i``."""
        mask = np.zeros(self.shape, bool)
        rows, cols, crop = self.object_logits(i)
        mask[rows, cols] = crop > 0
        return mask

    def label_image(self, present_only: bool = False) -> np.ndarray:
        """(H, W) int32: each pixel the id of the object with the highest positive logit, else 0.

        Ties go to the object listed first. ``present_only``: leave out objects
        whose object score is <= 0 (predicted absent).
        """
        best = np.zeros(self.shape, np.float32)
        labels = np.zeros(self.shape, np.int32)
        scores = np.asarray(self.object_scores, np.float32)
        for i, obj in enumerate(self.obj_ids):
            if present_only and not scores[i] > 0:
                continue
            rows, cols, crop = self.object_logits(i)
            win = crop > best[rows, cols]
            best[rows, cols][win] = crop[win]
            labels[rows, cols][win] = obj
        return labels

    def predicted_ids(self) -> set[int]:
        """Objects that have a prediction on this frame.

        An object the session has nothing for here (no prompt on this frame and
        not propagated to it, e.g. right after a session was reloaded) is
        reported without one; a UI must leave that object's pixels alone.
        """
        from ..modeling.sam2 import NO_OBJECT_LOGIT

        scores = np.asarray(self.object_scores, dtype=np.float64)
        return {o for o, v in zip(self.obj_ids, scores, strict=True) if v != NO_OBJECT_LOGIT}

    def subset(self, keep) -> FrameResult:
        """The same result for the objects at positions ``keep`` only."""
        idx = list(keep)

        def pick(a):
            return None if a is None else np.asarray(a)[idx]

        return FrameResult(
            self.frame,
            tuple(self.obj_ids[i] for i in idx),
            np.asarray(self.mask_logits)[idx],
            pick(self.object_scores),
            pick(self.predicted_ious),
            pick(self.stability_scores),
            self.frame_shape,
        )

    def with_ids(self, obj_ids) -> FrameResult:
        """The same result under other object ids (one per object, in order)."""
        obj_ids = tuple(int(i) for i in obj_ids)
        if len(obj_ids) != len(self.obj_ids):
            raise ValueError(f"with_ids: {len(self.obj_ids)} ids needed, got {len(obj_ids)}")
        return dataclasses.replace(self, obj_ids=obj_ids)

    @classmethod
    def empty(cls, frame: int, frame_shape: tuple[int, int]) -> FrameResult:
        """A result with no objects on ``frame`` (H, W = ``frame_shape``)."""
        h, w = frame_shape
        none = np.zeros(0, np.float32)
        return cls(int(frame), (), np.zeros((0, h, w), np.float32), none, none, none)
