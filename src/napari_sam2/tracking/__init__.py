"""Automatic mode: find every cell, track all of them, write lineages (Qt-free).

- :class:`MaskGenerator`: SAM 2 "segment everything" on one image.
- :func:`track_all`: seed, propagate, detect new and dividing cells over a time-lapse
  (rules in :mod:`napari_sam2.tracking.decisions`).
- :mod:`napari_sam2.tracking.export`: CTC, GEFF, CSV and napari Tracks data.

Names load on first use, so importing this package (e.g. for the CLI parser)
does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

_LAZY = {
    "GeneratedMasks": "mask_generator",
    "GeneratorConfig": "mask_generator",
    "MaskGenerator": "mask_generator",
    "TrackConfig": "decisions",
    "TrackingResult": "tracker",
    "track_all": "tracker",
}
_MODULES = ("decisions", "export", "mask_generator", "mask_ops", "tracker")

__all__ = [*_LAZY, *_MODULES]


def __getattr__(name: str):
    if name in _MODULES:
        return import_module(f"{__name__}.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)


if TYPE_CHECKING:  # pragma: no cover
    from .decisions import TrackConfig  # noqa: F401
    from .mask_generator import GeneratedMasks, GeneratorConfig, MaskGenerator  # noqa: F401
    from .tracker import TrackingResult, track_all  # noqa: F401
