"""Shared fixtures: random-init checkpoints and the reference (sam2==1.1.0) oracle."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The reference's image predictor imports torchvision.transforms; see _stubs.
sys.path.insert(0, str(Path(__file__).parent / "_stubs"))

import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random-init sam2.1_hiera_tiny checkpoint in the official format."""
    from napari_sam2 import build_model

    torch.manual_seed(0)
    model = build_model("sam2.1_hiera_tiny")
    path = tmp_path_factory.mktemp("ckpt") / "sam2.1_hiera_tiny_random.pt"
    torch.save({"model": model.state_dict()}, path)
    return path
