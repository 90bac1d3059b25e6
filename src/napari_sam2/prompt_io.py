"""Compatibility path: ``napari_sam2.prompt_io`` is :mod:`napari_sam2.files.prompt_files` (same module object)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("napari_sam2.files.prompt_files")
