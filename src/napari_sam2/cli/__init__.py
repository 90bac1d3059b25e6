"""The ``napari-sam2`` command line (argument parsing, exit codes, progress)."""

from .app import main

__all__ = ["main"]
