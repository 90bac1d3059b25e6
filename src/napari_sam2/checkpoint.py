"""Compatibility path: ``napari_sam2.checkpoint`` is :mod:`napari_sam2.weights.loading` (same module object)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("napari_sam2.weights.loading")
