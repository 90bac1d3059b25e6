"""Stacks of frames: one wrapper over any array-like, and reading stacks from files.

:func:`read_stack` opens a TIFF / OME-TIFF, a ``.npy`` file or a folder of TIFF
frames lazily (memory-mapped where possible). numpy and tifffile only: no
torch, no Qt.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError, Sam2Error, one_line
from .tiff import read_tiff_array

__all__ = ["Stack", "StackReadError", "TiffFolder", "frame_index", "read_stack"]

_TIFF_SUFFIXES = (".tif", ".tiff")


class StackReadError(Sam2Error):
    """A frame of the input could not be read while segmenting (bad input, exit 2).

    Not an InputError on purpose: the frame reader reports InputErrors raised
    while reading as bad pixel values, which would hide the real reason.
    """


class TiffFolder:
    """A folder of single-frame TIFFs as a lazy (T, H, W[, C]) array; frame t is file t.

    Files are sorted by name with numbers compared as numbers (``frame2`` before
    ``frame10``). Only headers are read up front; pixels are read on indexing.
    """

    def __init__(self, folder: str | os.PathLike, files: Sequence[Path] | None = None) -> None:
        self.folder = Path(folder)
        if files is None:
            files = sorted(
                (p for p in self.folder.iterdir() if p.suffix.lower() in _TIFF_SUFFIXES),
                key=lambda p: _natural_key(p.name),
            )
            if not files:
                raise InputError(f"input: the folder {self.folder} holds no .tif/.tiff files")
        self.files = list(files)
        first, _ = read_tiff_array(self.files[0], mmap=True)
        self.frame_shape, self.dtype = tuple(first.shape), first.dtype
        self.shape = (len(self.files), *self.frame_shape)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, t: int) -> np.ndarray:
        path = self.files[t]
        try:
            frame, _ = read_tiff_array(path)
        except InputError as exc:
            raise StackReadError(f"input: frame {t}: {exc}") from None
        if frame.shape != self.frame_shape or frame.dtype != self.dtype:
            raise StackReadError(
                f"input: frame {t} ({path.name}) is {frame.shape} {frame.dtype}, "
                f"the first frame is {self.frame_shape} {self.dtype}"
            )
        return frame

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        head, rest = key[0], key[1:]
        if isinstance(head, slice):
            frames = [self._read(t) for t in range(*head.indices(len(self)))]
            stack = np.stack(frames) if frames else np.zeros((0, *self.frame_shape), self.dtype)
            return stack[(slice(None), *rest)]
        t = int(head)
        if not -len(self) <= t < len(self):
            raise IndexError(f"frame {t} out of range for {len(self)} frames")
        return self._read(t % len(self))[rest]

    def __array__(self, dtype=None, copy=None):
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)

    def subset(self, start: int, stop: int) -> TiffFolder:
        """Frames start..stop-1 as a new lazy folder stack."""
        return TiffFolder(self.folder, self.files[start:stop])


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class Stack:
    """Frames of an array-like, read lazily, with the stack axis (time or z) first.

    The one stack wrapper of the package: the CLI's inputs (:func:`read_stack`)
    and the widget's image layers are both a ``Stack``, and a
    :class:`~napari_sam2.engine.session.VideoSession` reads frames from it.

    ``data``: an array-like (numpy, memory map, dask, zarr, :class:`TiffFolder`)
    whose axis ``axis`` runs over frames; the other axes are (H, W) or
    (H, W, C). ``channel_axis``: the axis of the (T, ...) view that holds
    channels, or None. ``rgb``: shorthand for channels last. ``stack[t]``
    reads one frame as a numpy array; ``shape`` is the view's shape.
    """

    def __init__(
        self,
        data,
        axis: int = 0,
        channel_axis: int | None = None,
        path: Path | None = None,
        *,
        rgb: bool = False,
    ) -> None:
        shape = tuple(int(s) for s in data.shape)
        if rgb:
            channel_axis = len(shape) - 1
        spatial = len(shape) - (0 if channel_axis is None else 1)
        if spatial != 3:
            kind = "RGB " if rgb else ""
            raise InputError(
                f"image: expected a 3D {kind}stack (frames, rows, cols), got shape {shape}; "
                "pick a layer with one time or z axis"
            )
        if not 0 <= axis < spatial:
            raise InputError(f"stack axis: must be 0, 1 or 2, got {axis}")
        self.data = data
        self.axis = axis
        self.channel_axis = channel_axis
        self.path = None if path is None else Path(path)
        self.rgb = rgb
        rest = [s for i, s in enumerate(shape) if i != axis]
        self.shape = (shape[axis], *rest)
        self.ndim = len(self.shape)
        self.dtype = getattr(data, "dtype", None)

    @property
    def num_frames(self) -> int:
        return int(self.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        spatial = [n for i, n in enumerate(self.shape[1:], 1) if i != self.channel_axis]
        return int(spatial[0]), int(spatial[1])

    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, t):
        if not isinstance(t, (int, np.integer)):
            raise TypeError("Stack supports integer frame indices only")
        return np.asarray(self.data[frame_index(self.axis, t)])

    def frames(self, start: int, stop: int) -> Stack:
        """Frames start..stop-1 (a lazy view)."""
        if isinstance(self.data, TiffFolder):
            data = self.data.subset(start, stop)
        else:
            data = self.data[frame_index(self.axis, slice(start, stop))]
        return Stack(data, self.axis, self.channel_axis, self.path, rgb=self.rgb)


def frame_index(axis: int, frame) -> tuple:
    """Index tuple selecting ``frame`` (an int or a slice) along ``axis``, other axes whole."""
    if not isinstance(frame, slice):
        frame = int(frame)
    return (slice(None),) * axis + (frame,)


def read_stack(
    path: str | os.PathLike, time_axis: int | None = None, channel_axis: int | None = None
) -> Stack:
    """Open a TIFF / OME-TIFF, a ``.npy`` file or a folder of TIFF frames, lazily.

    TIFFs and ``.npy`` files are memory-mapped when their layout allows (else
    read). ``time_axis`` (default 0) is moved to the front. The result is
    (T, H, W) or (T, H, W, C); a single 2D image is one frame. The channel
    axis of 4D data is ``channel_axis`` (counted after time was moved first),
    else tifffile's ``C``/``S`` axis, else the last axis when it has at most 4
    entries. Anything else (a z-stack over time, channels elsewhere without
    ``channel_axis``) is refused, never guessed.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input: no such file or folder: {path}")
    if channel_axis is not None and (
        isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer))
    ):
        raise InputError(f"--channel-axis: must be an integer, got {channel_axis!r}")
    axes = ""
    if path.is_dir():
        data = TiffFolder(path)
        axes = "T" + ("YXS" if len(data.frame_shape) == 3 else "YX")
    elif path.suffix.lower() == ".npy":
        data = _read_npy(path)
    else:
        data, axes = read_tiff_array(path, mmap=True)
    return _arrange(data, path, axes, time_axis, channel_axis)


def _read_npy(path: Path) -> np.ndarray:
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # truncated files, pickles, foreign formats
        raise InputError(f"input: cannot read {path} as a .npy array ({one_line(exc)})") from None
    if not isinstance(data, np.ndarray):
        raise InputError(f"input: {path} holds no single array")
    return data


def _arrange(
    data, path: Path, axes: str, time_axis: int | None, channel_axis: int | None = None
) -> Stack:
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "biuf":  # bool, integers, floats
        raise InputError(f"input: {path} holds {dtype} data, not real-valued pixels")
    ndim = len(data.shape)
    if ndim == 2:
        data, axes, ndim = data[None], "T" + axes if axes else "", 3
    if ndim not in (3, 4):
        raise InputError(
            f"input: {path} has shape {tuple(data.shape)} ({axes or 'axes unknown'}); "
            "expected (T, H, W) or (T, H, W, C)"
        )
    if time_axis is not None:
        if not -ndim <= time_axis < ndim:
            raise InputError(f"--time-axis: {time_axis} is not an axis of shape {data.shape}")
        if isinstance(data, TiffFolder):
            if time_axis % ndim != 0:
                raise InputError("--time-axis: a folder of frames has time on axis 0")
        else:
            data = np.moveaxis(data, time_axis, 0)
            if len(axes) == ndim:
                order = list(axes)
                order.insert(0, order.pop(time_axis))
                axes = "".join(order)
    if channel_axis is not None:
        if ndim != 4:
            raise InputError(f"--channel-axis: {path} has shape {tuple(data.shape)}, no channels")
        if not -4 <= channel_axis < 4 or channel_axis % 4 == 0:
            raise InputError(
                f"--channel-axis: {channel_axis} is not a non-time axis of shape {tuple(data.shape)}"
            )
        channel_axis = int(channel_axis) % 4
    elif ndim == 4:
        channel_axis = _channel_axis(data.shape, axes)
    if ndim == 4 and channel_axis is None:
        named = f"axes {axes}" if len(axes) == ndim else "axes unknown"
        raise InputError(
            f"input: cannot tell the channel axis of shape {tuple(data.shape)} ({named}); "
            "a z-stack over time (T, Z, Y, X) is not supported: save one time point or one "
            "z plane; for channels give --channel-axis N"
        )
    if data.shape[0] < 1:
        raise InputError(f"input: {path} has no frames")
    return Stack(data, channel_axis=channel_axis, path=path)


def _channel_axis(shape: tuple[int, ...], axes: str) -> int | None:
    if len(axes) == len(shape):
        for code in "CS":
            if code in axes[1:]:
                return axes.index(code, 1)
        if "Z" in axes[1:]:
            return None  # a z-stack over time: not supported
    if shape[3] <= 4:
        return 3
    return None  # axis 1 may be channels or z: never guessed
