"""Compatibility path: ``napari_sam2.video`` is :mod:`napari_sam2.engine.session` (same module object)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("napari_sam2.engine.session")
