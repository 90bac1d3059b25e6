"""napari.yaml: a valid npe2 manifest whose commands all point at existing callables."""

from __future__ import annotations

import importlib
from pathlib import Path

import napari_sam2


def test_manifest_commands_resolve():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(Path(napari_sam2.__file__).parent / "napari.yaml")
    commands = manifest.contributions.commands
    assert len(commands) == 4
    for command in commands:
        module, _, attr = command.python_name.partition(":")
        assert module.startswith("napari_sam2._qt."), command.python_name
        assert callable(getattr(importlib.import_module(module), attr)), command.python_name
