"""Lazy, prefetching access to a stack of frames (time-lapse or z-stack).

Any array-like indexed along its first axis works: numpy, dask, zarr, tifffile
memmaps. Frames are read and preprocessed one at a time, at most a couple
ahead of the consumer, so memory does not depend on the stack's length.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from ..errors import InputError
from .preprocess import Intensity, as_channels_last, choose_intensity, to_model_input, to_unit_rgb


class FrameSource:
    """Preprocessed model inputs for the frames of ``frames``.

    frames: (T, H, W) or (T, H, W, C) (or with the channel axis elsewhere, see
    ``channel_axis``, counted on the full array). ``get(t)`` returns
    (1, 3, S, S) float32.
    """

    def __init__(
        self,
        frames,
        image_size: int,
        channel_axis: int | None = None,
        contrast_limits: Sequence | None = None,
        prefetch: int = 2,
    ) -> None:
        if isinstance(frames, (list, tuple)):
            frames = np.asarray(frames)
        shape = tuple(getattr(frames, "shape", ()))
        if len(shape) not in (3, 4):
            raise InputError(f"frames: expected (T, H, W) or (T, H, W, C), got shape {shape}")
        if shape[0] < 1:
            raise InputError("frames: the stack has no frames")
        dtype = getattr(frames, "dtype", None)
        if dtype is not None and np.dtype(dtype).kind not in "biuf":
            raise InputError(f"frames: dtype {dtype} is not numeric pixel data")
        if channel_axis is not None:
            if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
                raise InputError(f"channel_axis: must be an integer axis, got {channel_axis!r}")
            if len(shape) != 4:
                raise InputError("channel_axis: given for frames without a channel axis")
            if not -4 <= channel_axis < 4:
                raise InputError(f"channel_axis: {channel_axis} is not an axis of shape {shape}")
            channel_axis = int(channel_axis) % 4
            if channel_axis == 0:
                raise InputError("channel_axis: cannot be the frame axis (0)")
        elif len(shape) == 4 and shape[3] > 4:
            raise InputError(
                f"frames: shape {shape} has 4 axes and its last ({shape[3]}) is too long for "
                "channels; a z-stack over time (T, Z, Y, X) is not supported: pass one time "
                "point (frames[t], Z as the stack) or one plane (frames[:, z]), or name the "
                "channel axis with channel_axis"
            )
        self.frames = frames
        self.num_frames = shape[0]
        self.image_size = image_size
        self._channel_axis = None if channel_axis is None else channel_axis - 1
        sample = self.raw(0)
        self.hw: tuple[int, int] = sample.shape[:2]
        if min(self.hw) < 2:
            raise InputError(f"frames: frames of {self.hw} pixels are too small")
        self.intensity: Intensity = choose_intensity(self._sample_stack(sample), contrast_limits)
        self._prefetch = prefetch
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-sam2-frames")
        self._pending: OrderedDict[int, Future] = OrderedDict()

    def raw(self, t: int) -> np.ndarray:
        """Frame t as a channels-last numpy array (H, W, C)."""
        return as_channels_last(np.asarray(self.frames[t]), self._channel_axis)

    def _sample_stack(self, first: np.ndarray) -> np.ndarray:
        # Percentiles from a few evenly spaced frames represent the stack cheaply.
        idx = np.unique(np.linspace(0, self.num_frames - 1, min(8, self.num_frames)).astype(int))
        return np.stack([first if i == 0 else self.raw(int(i)) for i in idx])

    def _prepare(self, t: int, raw: np.ndarray) -> torch.Tensor:
        try:
            unit = to_unit_rgb(raw, self.intensity)
        except InputError:
            raise InputError(f"frames: frame {t} contains NaN or infinite values") from None
        return to_model_input(unit, self.image_size)

    def check_index(self, t, name: str = "frame") -> int:
        if not isinstance(t, (int, np.integer)) or isinstance(t, bool):
            raise InputError(f"{name}: must be an integer frame index, got {t!r}")
        if not 0 <= t < self.num_frames:
            raise InputError(f"{name}: index {t} is out of range for {self.num_frames} frames")
        return int(t)

    def get(self, t: int, upcoming: Sequence[int] = ()) -> torch.Tensor:
        """Model input of frame t; starts reading ``upcoming`` frames in the background.

        Only the reading (disk, dask, zarr: mostly waiting) overlaps with compute;
        the conversion runs here, since a second compute thread would only fight
        the model for the same cores.
        """
        fut = self._pending.pop(t, None)
        raw = fut.result() if fut is not None else self.raw(t)
        for u in list(upcoming)[: self._prefetch]:
            if u not in self._pending and 0 <= u < self.num_frames:
                self._pending[u] = self._pool.submit(self.raw, u)
        while len(self._pending) > self._prefetch:
            self._pending.popitem(last=False)[1].cancel()
        return self._prepare(t, raw)

    def close(self) -> None:
        for fut in self._pending.values():
            fut.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
