"""Shared helpers for the benchmarks: synthetic frames, models, the reference, timing."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
# The reference's image predictor imports torchvision.transforms; tests ship a stand-in.
sys.path.insert(0, str(HERE.parent / "tests" / "_stubs"))
sys.path.insert(0, str(HERE.parent / "tests" / "engine"))  # oracle.py, video_oracle.py


class LazyFrames:
    """An array-like (T, S, S, 3) uint8 stack that renders each frame on demand.

    Three drifting discs on noise. Nothing is held between reads, so it measures
    an engine's memory, not the input's.
    """

    def __init__(self, n_frames: int, size: int, seed: int = 0) -> None:
        self.shape = (n_frames, size, size, 3)
        self.dtype = np.dtype(np.uint8)
        rng = np.random.default_rng(seed)
        self._centres = rng.uniform(0.3, 0.7, (3, 2))
        self._speeds = rng.uniform(-0.002, 0.002, (3, 2))
        self._seed = seed

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, t):
        if not isinstance(t, (int, np.integer)):
            raise TypeError("LazyFrames supports integer indexing only")
        size = self.shape[1]
        yy, xx = np.mgrid[:size, :size] / size
        img = np.full((size, size, 3), 0.15, np.float32)
        for c, v in zip(self._centres, self._speeds):
            cy, cx = c + v * int(t)
            img += 0.7 * (((yy - cy) ** 2 + (xx - cx) ** 2) < 0.01)[..., None]
        noise = np.random.default_rng(self._seed * 100_003 + int(t)).normal(0, 0.03, img.shape)
        return (np.clip(img + noise, 0, 1) * 255).astype(np.uint8)

    def __array__(self, dtype=None, copy=None):
        return np.stack([self[i] for i in range(len(self))]).astype(dtype or self.dtype)


def click_points(n_objects: int, size: int) -> list[tuple[float, float]]:
    """(row, col) positive clicks spread over the frame, one per object."""
    rng = np.random.default_rng(1)
    return [tuple(rng.uniform(0.15, 0.85, 2) * size) for _ in range(n_objects)]


def reference_and_ours(variant: str, image_size: int, tmp: Path, device: str = "cpu"):
    """The reference video predictor and napari-sam2's model, sharing random weights."""
    from oracle import reference_model, save_checkpoint
    from video_oracle import fp32_memory

    from napari_sam2 import load_model

    ref = fp32_memory(reference_model(variant, image_size, video=True))
    ours = load_model(save_checkpoint(ref, tmp / f"{variant}.pt"), image_size=image_size)
    return ref.to(device), ours.to(device)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2))


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def quiet_warnings() -> None:
    warnings.filterwarnings("ignore")
