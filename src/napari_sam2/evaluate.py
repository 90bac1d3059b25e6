"""Compatibility path: ``napari_sam2.evaluate`` is :mod:`napari_sam2.evaluation.metrics` (same module object)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("napari_sam2.evaluation.metrics")
