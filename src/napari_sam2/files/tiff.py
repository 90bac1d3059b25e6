"""Reading TIFF stacks (damage reported in one line) and writing int32 label TIFFs.

numpy and tifffile only: no torch, no Qt. Label TIFFs, both prompts
(``mask_prompts.tif``) and results (``labels.tif``), are (T, H, W) int32 with
ImageJ metadata.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile

from ..errors import InputError, one_line
from .atomic import atomic_path

MAX_ID = np.iinfo(np.int32).max  # object ids end up in int32 label images


def check_label_volume(masks, name: str) -> np.ndarray:
    """``masks`` as a (T, H, W) integer array (2D becomes T = 1); InputError naming ``name``."""
    arr = masks if isinstance(masks, np.ndarray) else np.asarray(masks)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise InputError(f"{name}: expected a (T, H, W) label volume, got shape {arr.shape}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name}: expected integer object ids, got dtype {arr.dtype}")
    return arr


@contextmanager
def _tiff_problems() -> Iterator[list[str]]:
    """Collect what tifffile logs while a file is parsed.

    tifffile does not raise on a cut-off page chain or ImageJ stack: it logs a
    warning and returns fewer frames. Those messages are collected here (and
    kept off the console) so the caller can reject the file.
    """
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("tifffile")
    handler = _Collect(logging.WARNING)
    old_propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = old_propagate


_DAMAGE_WORDS = ("corrupt", "invalid page offset", "truncat", "failed to read", "incomplete")


def _damage(messages: list[str]) -> str | None:
    for m in messages:
        if any(w in m.lower() for w in _DAMAGE_WORDS):
            return " ".join(m.split())
    return None


def read_tiff_array(path: str | os.PathLike, *, mmap: bool = False) -> tuple[np.ndarray, str]:
    """Read the first image series of a TIFF / OME-TIFF -> (array, axes).

    ``axes`` is tifffile's axes string (e.g. ``"TYX"``, ``"TCYX"``, ``"YXS"``).
    With ``mmap``, uncompressed contiguous data comes back as a read-only
    memory map (nothing is loaded); other files are read into memory. A missing,
    non-TIFF, truncated or undecodable file raises InputError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {'is a folder' if path.is_dir() else 'no such file'}")
    try:
        with _tiff_problems() as problems, tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise InputError(f"{path}: the TIFF holds no image")
            series = tif.series[0]
            axes, shape, dtype = series.axes, tuple(series.shape), series.dtype
            _check_complete(path, series, tif.filehandle.size, problems)
            contiguous = series.dataoffset is not None
            data = None if (mmap and contiguous) else series.asarray()
            _check_complete(path, series, tif.filehandle.size, problems)
    except InputError:
        raise
    except Exception as exc:  # tifffile and codecs raise many types on damaged files
        raise InputError(f"{path}: cannot read the TIFF ({one_line(exc)})") from None
    if data is None:
        # mode="r": tifffile.memmap's default "r+" would grow a short file with zeros.
        try:
            data = tifffile.memmap(path, mode="r")
        except Exception as exc:
            raise InputError(f"{path}: cannot memory-map the TIFF ({one_line(exc)})") from None
    if tuple(data.shape) != shape:
        data = data.reshape(shape)
    if data.dtype != dtype:  # pragma: no cover - defensive
        raise InputError(f"{path}: unexpected data type {data.dtype} (expected {dtype})")
    return data, axes


def _check_complete(path: Path, series, file_size: int, problems: list[str]) -> None:
    """Raise if the file is shorter than its own header says, or tifffile saw damage."""
    damage = _damage(problems)
    if damage:
        raise InputError(f"{path}: damaged or truncated TIFF ({damage})")
    if series.dataoffset is not None:
        end = series.dataoffset + series.nbytes
    else:
        ends = [
            o + c
            for page in series.pages
            if page is not None
            for o, c in zip(page.dataoffsets, page.databytecounts, strict=False)
        ]
        end = max(ends, default=0)
    if end > file_size:
        raise InputError(
            f"{path}: truncated TIFF (image data end at byte {end}, the file has {file_size})"
        )


def label_tiff_options(shape: tuple[int, ...]) -> dict:
    """tifffile keyword arguments for a (T, H, W) int32 label TIFF that ImageJ understands.

    tifffile's ``imagej=True`` refuses int32, so the ImageJ hyperstack
    description (``frames=T``, axes TYX) is written by hand; ImageJ/Fiji open
    the signed 32-bit data as 32-bit grey, tifffile reads it back as int32 with
    axes ``TYX``. (A single frame reads back as (H, W): tifffile squeezes it.)
    """
    t = int(shape[0])
    desc = tifffile.imagej_description(tuple(shape), axes="TYX")
    if "frames=" not in desc:  # imagej_description drops frames=1
        desc = desc.replace("hyperstack=", f"frames={t}\nhyperstack=")
    nbytes = int(np.prod(shape)) * 4
    return {
        "description": desc,
        "metadata": None,  # no second (JSON) description: ImageJ would read that one
        "photometric": "minisblack",
        # Past 4 GiB classic TIFF offsets overflow.
        "bigtiff": nbytes > 2**32 - 2**25,
    }


def write_label_tiff(path: str | os.PathLike, labels) -> None:
    """Write a (T, H, W) (or (H, W)) label volume as an int32 ImageJ TIFF, atomically.

    The data go to a temporary file in the same folder that then replaces
    ``path``, so an existing file is untouched if anything fails.
    """
    arr = np.asarray(labels)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise InputError(f"labels: expected a (T, H, W) volume, got shape {arr.shape}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"labels: expected integer labels, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > MAX_ID):
        raise InputError(f"labels: values must lie in 0..{MAX_ID}")
    path = Path(path)
    with atomic_path(path, suffix=".tif") as tmp:
        tifffile.imwrite(tmp, arr.astype(np.int32, copy=False), **label_tiff_options(arr.shape))


def read_label_tiff(path: str | os.PathLike, *, mmap: bool = False) -> np.ndarray:
    """A label TIFF -> (T, H, W) integer array (a single 2D image becomes T = 1)."""
    data, _ = read_tiff_array(path, mmap=mmap)
    try:
        return check_label_volume(data, str(path))
    except InputError as exc:
        raise InputError(f"{exc} (a label TIFF is (T, H, W) integers)") from None
