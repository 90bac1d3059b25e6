"""Compatibility path: ``napari_sam2.config`` is :mod:`napari_sam2.modeling.config` (same module object)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("napari_sam2.modeling.config")
