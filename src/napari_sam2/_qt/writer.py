"""napari writer: a Labels layer to a (compressed) TIFF with tifffile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def write_labels_tiff(path: str, data: Any, meta: dict) -> list[str]:
    """Write one Labels layer's data to ``path`` and return ``[path]``.

    The smallest unsigned integer type that holds every label is used (ImageJ
    and Fiji read uint8/uint16 label images; larger ids stay uint32).
    Dask or zarr data is read into memory once here.
    """
    import tifffile

    labels = np.asarray(data)
    out = Path(path)
    if out.suffix.lower() not in (".tif", ".tiff"):
        out = out.with_suffix(".tif")
    tifffile.imwrite(out, labels_for_tiff(labels), compression="zlib", metadata=_axes(labels, meta))
    return [str(out)]


def labels_for_tiff(labels: np.ndarray) -> np.ndarray:
    """Labels cast to the smallest unsigned dtype that holds them (negative ids are refused)."""
    if labels.size and labels.min() < 0:
        raise ValueError("labels: negative label ids cannot be written to TIFF")
    top = int(labels.max()) if labels.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return labels.astype(dtype, copy=False)
    return labels.astype(np.uint64, copy=False)


def _axes(labels: np.ndarray, meta: dict) -> dict:
    """TIFF axes metadata: ``TYX`` / ``ZYX`` when the layer names them, else generic."""
    names = [str(a).lower() for a in (meta or {}).get("axis_labels", ())]
    if len(names) == labels.ndim and all(len(n) == 1 and n in "tzcyx" for n in names):
        return {"axes": "".join(names).upper()}
    return {"axes": "Q" * (labels.ndim - 2) + "YX"} if labels.ndim >= 2 else {}
