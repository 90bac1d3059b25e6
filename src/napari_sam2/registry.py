"""Compatibility path: ``napari_sam2.registry`` is :mod:`napari_sam2.weights.registry` (same module object)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("napari_sam2.weights.registry")
