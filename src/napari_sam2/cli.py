"""The ``napari-sam2`` command line: segment, models, view, evaluate.

Each subcommand is a thin wrapper around small functions that can be used from
Python as well (:func:`read_stack`, :func:`run_segment`, :func:`run_evaluate`,
...). Heavy modules (torch, napari) are imported inside the commands that need
them, so ``napari-sam2 --help`` starts fast and nothing here needs Qt except
``view``.

Exit codes: 0 success, 2 bad usage or bad input (including a corrupt
checkpoint), 1 any other failure. Errors are one line on stderr; ``--debug``
adds the traceback. See docs/cli.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from . import __version__
from .errors import CheckpointError, InputError, Sam2Error
from .output_rules import RESULT_FILES, check_not_input, check_output_file, check_result_folder
from .prompt_io import (
    Prompts,
    _set_new_file_mode,
    _umask,
    check_prompts,
    label_tiff_options,
    read_label_tiff,
    read_prompts,
    read_tiff_array,
    select_frames,
)

PROG = "napari-sam2"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
_TIFF_SUFFIXES = (".tif", ".tiff")


class StackReadError(Sam2Error):
    """A frame of the input could not be read while segmenting (bad input, exit 2).

    Not an InputError on purpose: the frame reader reports InputErrors raised
    while reading as bad pixel values, which would hide the real reason.
    """


class _UsageError(Exception):
    """argparse's complaint, raised instead of printing usage and exiting."""

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D102 - argparse hook
        # argparse would print the multi-line usage and sys.exit(2); main() prints
        # one line instead and returns the code.
        raise _UsageError(message, self.prog)


# --------------------------------------------------------------------------- progress


class Progress:
    """A small text progress bar: count / total, rate and ETA, on a stream (stderr).

    On a terminal it redraws one line (at most 10 times a second); in a log file
    it writes a full line at most every ``log_interval`` seconds, so batch logs
    stay short. ``unit="B"`` shows sizes in MB.
    """

    def __init__(
        self,
        total: int | None,
        label: str,
        unit: str = "frames",
        stream: TextIO | None = None,
        enabled: bool = True,
        log_interval: float = 10.0,
    ) -> None:
        self.total, self.label, self.unit = total, label, unit
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.done = 0
        self._start = time.monotonic()
        self._last = -math.inf
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._interval = 0.1 if self._tty else log_interval
        self._drawn = False

    def update(self, n: int = 1) -> None:
        self.set(self.done + n)

    def set(self, done: int, total: int | None = None) -> None:
        """Set the count (and the total, when it becomes known)."""
        self.done = done
        if total is not None:
            self.total = total
        now = time.monotonic()
        if self.enabled and now - self._last >= self._interval:
            self._last = now
            self._draw()

    def close(self) -> None:
        if self.enabled:
            self._draw()
            if self._tty:
                self.stream.write("\n")
            self.stream.flush()

    def text(self) -> str:
        """The bar as one line of text, e.g. ``segment [#####.....] 3/6 frames 1.2 frames/s ETA 0:03``."""
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.done / elapsed
        parts = [self.label]
        if self.total:
            filled = int(20 * min(self.done / self.total, 1.0))
            parts.append("[" + "#" * filled + "." * (20 - filled) + "]")
        parts.append(f"{self._amount(self.done)}/{self._amount(self.total)} {self._unit()}")
        parts.append(f"{self._rate(rate)}")
        if self.total and rate > 0:
            parts.append(f"ETA {_clock(max(self.total - self.done, 0) / rate)}")
        else:
            parts.append(f"elapsed {_clock(elapsed)}")
        return " ".join(parts)

    def _amount(self, n: int | None) -> str:
        if n is None:
            return "?"
        return f"{n / 1e6:.1f}" if self.unit == "B" else str(n)

    def _unit(self) -> str:
        return "MB" if self.unit == "B" else self.unit

    def _rate(self, rate: float) -> str:
        if self.unit == "B":
            return f"{rate / 1e6:.1f} MB/s"
        return f"{rate:.2f} {self.unit}/s"

    def _draw(self) -> None:
        line = self.text()
        if self._tty:
            self.stream.write("\r" + line.ljust(79))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._drawn = True


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# --------------------------------------------------------------------------- reading stacks


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


@dataclass(frozen=True)
class Stack:
    """An input stack, lazily read, with time on axis 0.

    ``data``: (T, H, W) or (T, H, W, C) array-like (memory map, folder reader or
    array); ``channel_axis``: the axis of ``data`` holding channels, or None.
    """

    data: object
    path: Path
    channel_axis: int | None = None

    @property
    def num_frames(self) -> int:
        return int(self.data.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        spatial = [n for i, n in enumerate(self.data.shape[1:], 1) if i != self.channel_axis]
        return int(spatial[0]), int(spatial[1])

    def frames(self, start: int, stop: int) -> Stack:
        """Frames start..stop-1 (a lazy view)."""
        data = self.data
        data = data.subset(start, stop) if isinstance(data, TiffFolder) else data[start:stop]
        return Stack(data, self.path, self.channel_axis)


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
        raise InputError(f"input: cannot read {path} as a .npy array ({_one_line(exc)})") from None
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
    return Stack(data, path, channel_axis)


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


def parse_frame_range(text: str, num_frames: int) -> tuple[int, int]:
    """``"A:B"`` (either end may be left out) -> (start, stop) with 0 <= start < stop <= T."""
    match = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", text or "")
    if not match:
        raise InputError(f"--frames: expected A:B (e.g. 0:50), got {text!r}")
    start = int(match.group(1)) if match.group(1) else 0
    stop = int(match.group(2)) if match.group(2) else num_frames
    if not 0 <= start < stop <= num_frames:
        raise InputError(
            f"--frames: {text} is not a non-empty range within the {num_frames} frames (0:{num_frames})"
        )
    return start, stop


# --------------------------------------------------------------------------- segment


@dataclass(frozen=True)
class SegmentSummary:
    """What :func:`run_segment` wrote: the output path, frames, object ids and timings (s)."""

    out: Path
    num_frames: int
    frame_shape: tuple[int, int]
    obj_ids: tuple[int, ...]
    seconds: float
    frames_per_second: float


def load_prompts(path: str | os.PathLike, stack: Stack, frames: tuple[int, int] | None) -> Prompts:
    """Read prompts, check them against the whole stack, then re-index to ``frames``.

    Errors name the prompts file. Nothing heavy happens here, so bad prompts are
    reported before a model is loaded.
    """
    try:
        prompts = read_prompts(path)
        check_prompts(prompts, stack.num_frames, stack.frame_shape)
        if frames is not None:
            prompts = select_frames(prompts, *frames)
    except InputError as exc:
        message = str(exc)
        if not message.startswith(str(path)):
            message = f"{path}: {message.removeprefix('prompts: ')}"
        raise InputError(message) from None
    if prompts.is_empty:
        raise InputError(f"{path}: holds no prompts")
    return prompts


def check_output(out: Path, fmt: str, option: str = "--out", inputs: Sequence = ()) -> None:
    """Fail early (InputError) when ``out`` may not be written, before any compute.

    The rule is :mod:`napari_sam2.output_rules`: never an input, never a
    folder of the user's own files.
    """
    if fmt == "ctc":
        check_result_folder(out, "ctc", inputs, option)
        return
    if Path(out).is_dir():
        check_not_input(out, inputs, option)
        raise InputError(f"{option}: {out} is a folder; give a file name (or use --format ctc)")
    check_output_file(out, inputs, option)


def _temp_path(out: Path, suffix: str) -> Path:
    """A new empty file next to ``out`` (same file system, so os.replace is atomic)."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=suffix, dir=out.parent)
    except OSError as exc:
        raise InputError(f"--out: cannot write in {out.parent} ({exc.strerror or exc})") from None
    os.close(fd)
    _set_new_file_mode(Path(name))
    return Path(name)


def _start_frames(prompts: Prompts) -> tuple[int, int]:
    frames = prompts.frames()
    return frames[0], frames[-1]


def _passes(direction: str, first: int, last: int, num_frames: int) -> list[tuple[int, bool, int]]:
    """(start frame, reverse, number of frames) per propagation pass.

    forward: from the first prompted frame to the end; backward: from the last
    prompted frame to frame 0; both: forward, then backward from the first
    prompted frame (as ``VideoSession.segment``).
    """
    if direction == "forward":
        return [(first, False, num_frames - first)]
    if direction == "backward":
        return [(last, True, last + 1)]
    return [(first, False, num_frames - first), (first, True, first + 1)]


def _load_model(model: str, device, image_size: int, quiet: bool):
    """Resolve a registry name (downloading with a progress bar) or a path; load it."""
    from .checkpoint import load_model
    from .registry import REGISTRY, resolve_checkpoint

    source: object = model
    if model in REGISTRY:
        bar = Progress(None, f"download {model}", unit="B", enabled=not quiet)
        source = resolve_checkpoint(model, progress=lambda done, total: bar.set(done, total))
        if bar.done:
            bar.close()
    return load_model(source, device=device, image_size=image_size)


def run_segment(
    input: str | os.PathLike,
    prompts: str | os.PathLike,
    model: str,
    out: str | os.PathLike,
    *,
    direction: str = "both",
    device: str = "auto",
    dtype: str | None = None,
    frames: str | None = None,
    time_axis: int | None = None,
    channel_axis: int | None = None,
    image_size: int = 1024,
    fmt: str = "tiff",
    quiet: bool = False,
) -> SegmentSummary:
    """Segment and track the prompted objects of a stack; write a label TIFF or CTC folder.

    ``out`` receives (T, H, W) int32 labels (object ids, 0 background) for the
    selected frames. Everything cheap is checked first (input, prompts, output
    folder), then the model is loaded. The result is written to a temporary
    file next to ``out`` and moved into place at the end, so an existing
    ``out`` is untouched by any failure.
    """
    if direction not in ("forward", "backward", "both"):
        raise InputError(f"--direction: must be forward, backward or both, got {direction!r}")
    if fmt not in ("tiff", "ctc"):
        raise InputError(f"--format: must be tiff or ctc, got {fmt!r}")
    out = Path(out)
    stack = read_stack(input, time_axis, channel_axis)
    window = parse_frame_range(frames, stack.num_frames) if frames is not None else None
    selected = stack.frames(*window) if window else stack
    prompt_set = load_prompts(prompts, stack, window)
    ids = prompt_set.obj_ids()
    if fmt == "ctc" and ids and ids[-1] > 65535:
        raise InputError(f"{prompts}: object id {ids[-1]} does not fit CTC's 16-bit masks")
    model_path = model if Path(model).exists() else None
    check_output(out, fmt, inputs=(input, prompts, model_path))

    started = time.monotonic()
    tmp = _temp_path(out, ".tif")
    try:
        from .checkpoint import resolve_device
        from .precision import resolve_dtype

        dev = resolve_device(device)
        resolve_dtype(dtype, dev)  # refuse an impossible --dtype before loading the model
        net = _load_model(model, dev, image_size, quiet)
        labels = _segment_to_file(net, selected, prompt_set, direction, dtype, tmp, quiet)
        if fmt == "ctc":
            _write_ctc_atomically(labels, out)
        del labels  # close the memory map before the file is moved or removed
        if fmt == "tiff":
            os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    n = selected.num_frames
    return SegmentSummary(out, n, selected.frame_shape, ids, seconds, n / max(seconds, 1e-9))


def _segment_to_file(
    net, stack: Stack, prompts: Prompts, direction: str, dtype, tmp: Path, quiet: bool
):
    """Propagate and write each frame's labels into a (T, H, W) int32 TIFF memory map.

    Frames no pass reaches stay 0. Returns the (flushed) memory map.
    """
    import tifffile

    from .prompt_io import apply_prompts
    from .video import VideoSession

    shape = (stack.num_frames, *stack.frame_shape)
    labels = tifffile.memmap(tmp, shape=shape, dtype=np.int32, **label_tiff_options(shape))
    first, last = _start_frames(prompts)
    passes = _passes(direction, first, last, stack.num_frames)
    # "both" meets its start frame twice: the bar counts frames, not steps.
    covered = set()
    for start, reverse, n in passes:
        covered.update(range(start, start - n, -1) if reverse else range(start, start + n))
    bar = Progress(len(covered), "segment", enabled=not quiet)
    seen: set[int] = set()
    with VideoSession(net, stack.data, channel_axis=stack.channel_axis, dtype=dtype) as session:
        try:
            apply_prompts(session, prompts)
        except InputError as exc:
            raise InputError(f"prompts: {exc}") from None
        for start, reverse, _ in passes:
            for result in session.propagate(start, reverse=reverse):
                labels[result.frame] = result.label_image()
                if result.frame not in seen:
                    seen.add(result.frame)
                    bar.update()
    bar.close()
    labels.flush()
    return labels


def _write_ctc_atomically(labels: np.ndarray, out: Path) -> None:
    """Export to a temporary folder first; only a complete export replaces ``out``'s CTC files.

    A new ``out`` appears with one rename. In an existing folder the old CTC
    files (``maskNNN.tif``, ``res_track.txt``) are swapped for the new ones;
    other files there are kept.
    """
    from .evaluate import write_ctc

    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp_dir, 0o777 & ~_umask())  # mkdtemp's 0700 would stick to a new ``out``
    try:
        write_ctc(np.asarray(labels), tmp_dir)
        if not out.exists():
            os.replace(tmp_dir, out)
            return
        for old in out.iterdir():
            if RESULT_FILES["ctc"].match(old.name):
                old.unlink()
        for new in tmp_dir.iterdir():
            os.replace(new, out / new.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


# --------------------------------------------------------------------------- models


def list_models(stream: TextIO) -> None:
    """Print the registry with the cache state of each checkpoint."""
    from .registry import CACHE_ENV, cache_dir, cache_state

    stream.write(f"cache folder: {cache_dir()}  (set {CACHE_ENV} to change it)\n")
    rows = [("name", "release", "size", "cached", "path")]
    for entry, path, present in cache_state():
        size = f"{entry.size / 1e6:.0f} MB" if entry.size else "?"
        rows.append((entry.name, entry.release, size, "yes" if present else "no", str(path)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:4], widths, strict=True)]
        stream.write("  ".join([*cells, row[4]]).rstrip() + "\n")


def download_model(name: str, quiet: bool = False) -> Path:
    """Fetch one registry checkpoint into the cache (progress bar on stderr)."""
    from .registry import download, get_entry

    entry = get_entry(name)
    bar = Progress(entry.size, f"download {name}", unit="B", enabled=not quiet)
    path = download(entry, progress=lambda done, total: bar.set(done, total))
    if bar.done:
        bar.close()
    return path


# --------------------------------------------------------------------------- evaluate


def run_evaluate(
    pred: str | os.PathLike, gt: str | os.PathLike, *, skip_first_last=False, ctc=False
) -> dict:
    """J, F and J&F (per object and mean) of two label TIFFs; CTC SEG/DET/TRA with ``ctc``."""
    from .evaluate import ctc_scores, jf_scores

    pred_labels = read_label_tiff(pred, mmap=True)
    gt_labels = read_label_tiff(gt, mmap=True)
    for path, volume in ((pred, pred_labels), (gt, gt_labels)):
        reason = _intensity_like(volume)
        if reason:
            raise InputError(
                f"{path}: looks like an intensity image, not labels ({reason}); "
                "pass the label TIFF that napari-sam2 wrote"
            )
    if pred_labels.shape != gt_labels.shape:
        raise InputError(
            f"{pred}: shape {pred_labels.shape} does not match {gt} shape {gt_labels.shape}"
        )
    scores = jf_scores(pred_labels, gt_labels, skip_first_last=skip_first_last)
    report = {"pred": str(pred), "gt": str(gt), "skip_first_last": skip_first_last}
    report.update(scores.as_dict())
    if ctc:
        report["ctc"] = ctc_scores(np.asarray(pred_labels), np.asarray(gt_labels))
    return report


def _intensity_like(volume) -> str | None:
    """Why a label volume looks like a raw image (many values, noisy), or None.

    Labels are flat regions: nearly every pixel equals its right neighbour.
    A microscopy image has many distinct values that change pixel to pixel.
    Checks the first and the middle frame.
    """
    for t in sorted({0, volume.shape[0] // 2}):
        plane = np.asarray(volume[t])
        if plane.shape[-1] < 2:
            continue
        distinct = len(np.unique(plane))
        same = float(np.mean(plane[:, 1:] == plane[:, :-1]))
        if distinct > 64 and same < 0.5:
            return (
                f"frame {t} has {distinct} distinct values and only {same:.0%} of "
                "neighbouring pixels equal"
            )
    return None


def format_scores(report: dict) -> str:
    """The evaluate table: one row per object and a mean row; CTC scores below."""
    lines = [f"{'object':>8}  {'J':>6}  {'F':>6}  {'J&F':>6}"]
    for obj in report["objects"]:
        lines.append(
            f"{obj:>8}  {report['J'][obj]:6.3f}  {report['F'][obj]:6.3f}  {report['JF'][obj]:6.3f}"
        )
    lines.append(
        f"{'mean':>8}  {report['J_mean']:6.3f}  {report['F_mean']:6.3f}  {report['JF_mean']:6.3f}"
    )
    if "ctc" in report:
        c = report["ctc"]
        lines.append(f"CTC  SEG {c['SEG']:.3f}  DET {c['DET']:.3f}  TRA {c['TRA']:.3f}")
    return "\n".join(lines) + "\n"


def _write_json(path: Path, data: dict, inputs: Sequence = ()) -> None:
    check_output(path, "json", "--json", inputs)
    tmp = _temp_path(path, ".json")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- view


def run_view(
    input: str | os.PathLike | None = None,
    time_axis: int | None = None,
    channel_axis: int | None = None,
) -> None:
    """Open napari with the stack (or the synthetic sample) and the SAM 2 dock widget."""
    if input is None:
        from ._sample_data import sample_timelapse

        ((data, meta, _),) = sample_timelapse()
        name, channel_axis = meta["name"], None
    else:
        stack = read_stack(input, time_axis, channel_axis)
        data, name, channel_axis = stack.data, stack.path.stem, stack.channel_axis
        if isinstance(data, TiffFolder):
            import dask.array as da

            data = da.from_array(data, chunks=(1, *data.frame_shape))
    import napari  # after reading: a bad input fails fast, without starting Qt

    viewer = napari.Viewer(title=f"{PROG}: {name}")
    rgb = channel_axis == 3 and data.shape[3] in (3, 4)
    axes = {"axis_labels": ("t", "y", "x")}  # time first: the slider says "t"
    if channel_axis is None or rgb:
        viewer.add_image(data, name=name, rgb=rgb, **axes)
    else:
        viewer.add_image(data, name=name, channel_axis=channel_axis, **axes)
    try:
        from ._widget import Sam2Widget

        viewer.window.add_dock_widget(Sam2Widget(viewer), name="SAM 2 segmentation", area="right")
    except Exception as exc:  # the image is still worth showing without the widget
        print(
            f"{PROG}: warning: the SAM 2 widget is unavailable ({_one_line(exc)}); "
            "opening napari without it",
            file=sys.stderr,
        )
    napari.run()


# --------------------------------------------------------------------------- argparse


def _image_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 64 or value % 32:
        raise argparse.ArgumentTypeError(f"must be a multiple of 32 and >= 64, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of all subcommands (each sets ``func``)."""
    parser = _Parser(
        prog=PROG,
        description="SAM 2 segmentation and tracking of cells in microscopy time-lapses.",
        epilog="Exit codes: 0 success, 2 bad usage or input, 1 other failures. See docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    seg = sub.add_parser(
        "segment",
        parents=[common],
        help="segment and track prompted objects in a stack, write a label TIFF",
        description="Segment and track the prompted objects of a time-lapse; write int32 labels.",
    )
    seg.add_argument("input", help="TIFF/OME-TIFF, .npy, or a folder of TIFF frames")
    seg.add_argument(
        "--prompts",
        required=True,
        help="points.csv, boxes.csv, a mask-prompt .tif, or a folder holding them",
    )
    seg.add_argument(
        "--model", required=True, help="checkpoint name (see 'napari-sam2 models') or .pt path"
    )
    seg.add_argument("--out", required=True, help="output .tif (or folder with --format ctc)")
    seg.add_argument("--direction", choices=("forward", "backward", "both"), default="both")
    seg.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    seg.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        help="compute precision (default: bfloat16 on CUDA, float32 elsewhere)",
    )
    seg.add_argument("--frames", metavar="A:B", help="only frames A..B-1 (prompts re-indexed)")
    seg.add_argument("--time-axis", type=int, metavar="N", help="axis holding time (default 0)")
    seg.add_argument(
        "--channel-axis", type=int, metavar="N", help="axis holding channels of 4D data"
    )
    seg.add_argument(
        "--image-size", type=_image_size, default=1024, metavar="N", help="model input size (1024)"
    )
    seg.add_argument("--format", choices=("tiff", "ctc"), default="tiff", dest="fmt")
    seg.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    seg.set_defaults(func=_cmd_segment)

    models = sub.add_parser(
        "models",
        parents=[common],
        help="list the checkpoints and the cache, or download one",
        description="List the known checkpoints and whether each is cached, or download one.",
    )
    models.add_argument("--download", metavar="NAME", help="download this checkpoint")
    models.add_argument("--quiet", action="store_true", help="no progress bar")
    models.set_defaults(func=_cmd_models)

    view = sub.add_parser(
        "view",
        parents=[common],
        help="open napari with a stack and the SAM 2 widget",
        description="Open napari with a stack (or a synthetic sample) and the SAM 2 widget.",
    )
    view.add_argument("input", nargs="?", help="stack to open (default: synthetic sample)")
    view.add_argument("--time-axis", type=int, metavar="N", help="axis holding time (default 0)")
    view.add_argument(
        "--channel-axis", type=int, metavar="N", help="axis holding channels of 4D data"
    )
    view.set_defaults(func=_cmd_view)

    ev = sub.add_parser(
        "evaluate",
        parents=[common],
        help="score a label TIFF against ground truth (J, F, J&F; CTC with --ctc)",
        description="DAVIS J, F and J&F per object and mean; CTC SEG/DET/TRA with --ctc.",
    )
    ev.add_argument("pred", help="predicted (T, H, W) label TIFF")
    ev.add_argument("gt", help="ground-truth (T, H, W) label TIFF")
    ev.add_argument("--json", metavar="OUT.json", help="also write the scores as JSON")
    ev.add_argument("--skip-first-last", action="store_true", help="leave out first and last frame")
    ev.add_argument("--ctc", action="store_true", help="also compute CTC SEG, DET and TRA")
    ev.set_defaults(func=_cmd_evaluate)
    return parser


def _cmd_segment(args) -> int:
    summary = run_segment(
        args.input,
        args.prompts,
        args.model,
        args.out,
        direction=args.direction,
        device=args.device,
        dtype=args.dtype,
        frames=args.frames,
        time_axis=args.time_axis,
        channel_axis=args.channel_axis,
        image_size=args.image_size,
        fmt=args.fmt,
        quiet=args.quiet,
    )
    if not args.quiet:
        print(
            f"{PROG}: wrote {summary.out}: {summary.num_frames} frames of "
            f"{summary.frame_shape[0]} x {summary.frame_shape[1]}, objects "
            f"{list(summary.obj_ids)}, {summary.seconds:.1f} s",
            file=sys.stderr,
        )
    return EXIT_OK


def _cmd_models(args) -> int:
    if args.download:
        print(download_model(args.download, quiet=args.quiet))
    else:
        list_models(sys.stdout)
    return EXIT_OK


def _cmd_view(args) -> int:
    run_view(args.input, args.time_axis, args.channel_axis)
    return EXIT_OK


def _cmd_evaluate(args) -> int:
    if args.json:  # refused before any scoring
        check_output(Path(args.json), "json", "--json", (args.pred, args.gt))
    report = run_evaluate(args.pred, args.gt, skip_first_last=args.skip_first_last, ctc=args.ctc)
    if args.json:
        _write_json(Path(args.json), report, (args.pred, args.gt))
    sys.stdout.write(format_scores(report))
    return EXIT_OK


# --------------------------------------------------------------------------- main


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, Sam2Error):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= 600 else text[:597] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"{PROG}: error: {exc} (see '{exc.prog} --help')", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    # napari's event loop (view) keeps Qt's own handling of signals.
    previous = _on_sigterm() if args.command != "view" else None
    try:
        return args.func(args)
    except _Terminated:
        print(f"{PROG}: terminated (SIGTERM); partial output removed", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (InputError, CheckpointError, StackReadError) as exc:
        code = EXIT_USAGE
        error = exc
    except Exception as exc:  # anything else is a runtime failure, reported in one line
        code = EXIT_FAILURE
        error = exc
    finally:
        _restore_sigterm(previous)
    if args.debug:
        traceback.print_exception(error)
    print(f"{PROG}: error: {_one_line(error)}", file=sys.stderr)
    return code


class _Terminated(BaseException):
    """SIGTERM (what a cluster scheduler sends) as an exception, so cleanup runs as for Ctrl-C."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated()


def _on_sigterm():
    """Turn SIGTERM into :class:`_Terminated` (main thread only); returns the old handler."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _restore_sigterm(previous) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
