"""Turning microscopy arrays into SAM 2 input tensors.

8-bit RGB goes through exactly the reference pipeline: x/255, bilinear
antialiased resize to the model size, ImageNet mean/std. Everything else
(16-bit, float, grayscale, 2 or >3 channels) is first mapped to [0, 1] per
channel, from the user's contrast limits or robust percentiles, and grayscale
is repeated to 3 channels. No data is silently cut to 8 bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PERCENTILES = (0.5, 99.8)  # robust default display range, ignoring hot pixels


@dataclass(frozen=True)
class Intensity:
    """Per-channel intensity window mapped to [0, 1]: (lo, hi) for each of C channels.

    ``None`` means the exact 8-bit RGB path (x / 255).
    """

    limits: tuple[tuple[float, float], ...] | None

    @property
    def is_rgb8(self) -> bool:
        return self.limits is None


def as_channels_last(image: np.ndarray, channel_axis: int | None) -> np.ndarray:
    """(H, W) or an image with a channel axis -> (H, W, C)."""
    if image.dtype.kind not in "biuf":
        raise InputError(f"image: dtype {image.dtype} is not numeric pixel data")
    if channel_axis is not None and (
        isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer))
    ):
        raise InputError(f"channel_axis: must be an integer axis, got {channel_axis!r}")
    if image.ndim == 2:
        return image[..., None]
    if image.ndim != 3:
        raise InputError(f"image: expected (H, W) or (H, W, C), got shape {image.shape}")
    if channel_axis is not None and not -3 <= channel_axis < 3:
        raise InputError(f"channel_axis: {channel_axis} is not an axis of shape {image.shape}")
    axis = -1 if channel_axis is None else channel_axis
    return np.moveaxis(image, axis, -1)


def choose_intensity(
    sample: np.ndarray, contrast_limits: Sequence[float] | Sequence[Sequence[float]] | None = None
) -> Intensity:
    """Decide how to scale data whose channels-last sample is (..., C).

    ``contrast_limits``: one (lo, hi) pair for all channels or one per channel.
    """
    channels = sample.shape[-1]
    if contrast_limits is None and sample.dtype == np.uint8 and channels == 3:
        return Intensity(None)
    if contrast_limits is not None:
        limits = np.asarray(contrast_limits, dtype=np.float64)
        if limits.shape == (2,):
            limits = np.tile(limits, (channels, 1))
        if limits.shape != (channels, 2) or not np.all(np.isfinite(limits)):
            raise InputError(
                f"contrast_limits: expected (lo, hi) or one pair per channel ({channels}), got {contrast_limits!r}"
            )
        if np.any(limits[:, 1] <= limits[:, 0]):
            raise InputError(f"contrast_limits: hi must exceed lo, got {contrast_limits!r}")
        return Intensity(tuple((float(a), float(b)) for a, b in limits))
    flat = np.asarray(sample).reshape(-1, channels)
    step = max(1, flat.shape[0] // 2_000_000)  # a subsample is plenty for percentiles
    flat = flat[::step].astype(np.float64)
    if not np.all(np.isfinite(flat)):
        raise InputError("frames: contain NaN or infinite values")
    lo, hi = np.percentile(flat, PERCENTILES, axis=0)
    hi = np.where(hi > lo, hi, lo + 1.0)  # a flat channel maps to 0, not NaN
    return Intensity(tuple((float(a), float(b)) for a, b in zip(lo, hi)))


def to_unit_rgb(image_hwc: np.ndarray, intensity: Intensity) -> torch.Tensor:
    """(H, W, C) array -> (3, H, W) float32 tensor in [0, 1] (RGB8: x / 255 exactly)."""
    if intensity.is_rgb8:
        return torch.from_numpy(np.ascontiguousarray(image_hwc)).permute(2, 0, 1).float() / 255.0
    data = np.asarray(image_hwc, dtype=np.float32)
    if not np.all(np.isfinite(data)):
        raise InputError("frames: contain NaN or infinite values")
    lo = np.array([a for a, _ in intensity.limits], dtype=np.float32)
    hi = np.array([b for _, b in intensity.limits], dtype=np.float32)
    data = np.clip((data - lo) / (hi - lo), 0.0, 1.0)
    t = torch.from_numpy(data).permute(2, 0, 1)
    c = t.shape[0]
    if c == 1:
        return t.expand(3, -1, -1).contiguous()
    if c == 2:  # two fluorescence channels: show them as green and magenta-free red/green
        return torch.cat([t, torch.zeros_like(t[:1])], dim=0)
    if c == 3:
        return t.contiguous()
    return t.mean(0, keepdim=True).expand(3, -1, -1).contiguous()


def to_model_input(unit_rgb: torch.Tensor, image_size: int) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> (1, 3, S, S): antialiased bilinear resize, ImageNet norm."""
    x = unit_rgb[None].float()
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(
            x, (image_size, image_size), mode="bilinear", align_corners=False, antialias=True
        )
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std
