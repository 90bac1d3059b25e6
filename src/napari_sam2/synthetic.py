"""Compatibility path: ``napari_sam2.synthetic`` is :mod:`napari_sam2.evaluation.synthetic` (same module object)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("napari_sam2.evaluation.synthetic")
