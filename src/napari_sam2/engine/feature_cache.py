"""Optional on-disk cache of image features, so re-propagation can skip the encoder.

Features of one frame are the three FPN levels (float32, about 17 MB per frame
at 1024 px). Entries live in ``<folder>/<key>/<frame>.pt``, where the key
fingerprints the model (variant, image size, weights) and the data (shape,
dtype, intensity window and a hash of sampled frames), so a changed model or
stack never reads stale features.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from ..files.atomic import atomic_path
from ..modeling.image_encoder import ImageFeatures
from ..modeling.sam2 import Sam2Model
from .frames import FrameSource


def cache_key(model: Sam2Model, source: FrameSource) -> str:
    """A short hex digest identifying (model, data)."""
    h = hashlib.sha256()
    h.update(f"{model.cfg.name}|{model.cfg.image_size}|{source.intensity}".encode())
    h.update(repr((tuple(getattr(source.frames, "shape", ())), str(source.frames.dtype))).encode())
    for p in list(model.parameters())[:: max(1, len(list(model.parameters())) // 16)]:
        h.update(p.detach().float().cpu().numpy().tobytes()[:4096])
    idx = np.unique(np.linspace(0, source.num_frames - 1, min(4, source.num_frames)).astype(int))
    for i in idx:
        h.update(np.ascontiguousarray(source.raw(int(i))).tobytes())
    return h.hexdigest()[:20]


class DiskFeatureCache:
    """Frame features keyed by frame index, stored as torch files."""

    def __init__(self, folder: str | os.PathLike, key: str) -> None:
        self.dir = Path(folder) / key
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, frame: int) -> Path:
        return self.dir / f"{frame:06d}.pt"

    def load(self, frame: int, pos: list[torch.Tensor], device) -> ImageFeatures | None:
        path = self._path(frame)
        if not path.exists():
            return None
        try:
            fpn = torch.load(path, map_location=device, weights_only=True)
        except Exception:  # a torn write from a crash: recompute rather than fail
            path.unlink(missing_ok=True)
            return None
        return ImageFeatures(fpn=list(fpn), pos=pos)

    def save(self, frame: int, feats: ImageFeatures) -> None:
        with atomic_path(self._path(frame)) as tmp:  # readers never see half a file
            torch.save([f.detach().cpu() for f in feats.fpn], tmp)
