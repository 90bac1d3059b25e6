"""napari-sam2: SAM 2 segmentation and tracking for microscopy in napari.

The compute side (network, engine, I/O, CLI) imports without Qt::

    from napari_sam2 import load_model, ImagePredictor, VideoSession
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .errors import CheckpointError, DownloadError, InputError, Sam2Error

__version__ = "0.1.0"

# Heavy modules (torch) load on first use so that `import napari_sam2` stays cheap
# for napari's plugin discovery.
_LAZY = {
    "load_model": "napari_sam2.weights.loading",
    "build_model": "napari_sam2.weights.loading",
    "ImagePredictor": "napari_sam2.engine.predictor",
    "VideoSession": "napari_sam2.engine.session",
    "FrameResult": "napari_sam2.engine.frame_result",
}

__all__ = [
    "CheckpointError",
    "DownloadError",
    "InputError",
    "Sam2Error",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'napari_sam2' has no attribute {name!r}")
    return getattr(import_module(module), name)


if TYPE_CHECKING:  # pragma: no cover
    from .engine.frame_result import FrameResult  # noqa: F401
    from .engine.predictor import ImagePredictor  # noqa: F401
    from .engine.session import VideoSession  # noqa: F401
    from .weights.loading import build_model, load_model  # noqa: F401
