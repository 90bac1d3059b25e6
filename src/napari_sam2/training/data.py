"""Where training clips come from, and how they become model tensors.

A clip is frames ``(T, H, W)`` or ``(T, H, W, C)`` of any dtype with instance
labels ``(T, H, W)`` (0 = background). Every source goes through the same
preprocessing as inference (:class:`~napari_sam2.frames.FrameSource`), so a model
trained here sees exactly what it will see in napari.

Sources:

* :class:`SyntheticClips` -- fresh clips from :func:`napari_sam2.synthetic.make_timelapse`
  every step, over all SNR presets, cell densities and division rates.
* :class:`StackClips` -- clips cut from in-memory or on-disk stacks with label stacks:
  saved napari-sam2 sessions (:func:`session_stack`), Cell Tracking Challenge folders
  (:func:`ctc_stack`) and TIFF pairs (:func:`tiff_stack`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch
import torch.nn.functional as F

from ..engine.frames import FrameSource
from ..errors import InputError
from ..evaluation.synthetic import SNR_PRESETS, CellConfig, make_timelapse


@dataclass
class Clip:
    """Frames ``(T, H, W[, C])`` and instance labels ``(T, H, W)`` int."""

    frames: np.ndarray
    labels: np.ndarray


@dataclass
class ClipTensors:
    """A clip ready for the model.

    ``images``: (T, 3, S, S) normalised model input; ``masks``: (T, B, S, S) float
    0/1 ground truth of the B chosen objects; ``obj_ids``: their labels.
    """

    images: torch.Tensor
    masks: torch.Tensor
    obj_ids: tuple[int, ...]


def to_tensors(clip: Clip, image_size: int, obj_ids) -> ClipTensors:
    """Preprocess frames as inference does and resize the chosen objects' masks."""
    source = FrameSource(clip.frames, image_size, prefetch=0)
    try:
        images = torch.cat([source.get(t) for t in range(source.num_frames)])
    finally:
        source.close()
    labels = torch.from_numpy(np.ascontiguousarray(clip.labels)).long()
    masks = torch.stack([(labels == i) for i in obj_ids], dim=1).float()  # (T, B, H, W)
    if masks.shape[-2:] != (image_size, image_size):
        # Area-weighted resize then threshold: a cell keeps its size at any scale.
        masks = F.interpolate(masks, (image_size, image_size), mode="area")
        masks = (masks >= 0.5).float()
    return ClipTensors(images, masks, tuple(int(i) for i in obj_ids))


def choose_objects(labels0: np.ndarray, max_objects: int, rng: np.random.Generator):
    """Up to ``max_objects`` labels present on the first frame, at random."""
    ids = np.unique(labels0)
    ids = ids[ids != 0]
    if len(ids) == 0:
        return ()
    k = min(max_objects, len(ids))
    return tuple(int(i) for i in rng.choice(ids, size=k, replace=False))


def augment(clip: Clip, rng: np.random.Generator, reverse_prob: float = 0.5) -> Clip:
    """Random time reversal (p = 0.5, as in the paper), flips and 90-degree turns."""
    frames, labels = clip.frames, clip.labels
    if rng.random() < reverse_prob:
        frames, labels = frames[::-1], labels[::-1]
    k = int(rng.integers(4))
    frames = np.rot90(frames, k, axes=(1, 2))
    labels = np.rot90(labels, k, axes=(1, 2))
    if rng.random() < 0.5:
        frames, labels = frames[:, :, ::-1], labels[:, :, ::-1]
    return Clip(np.ascontiguousarray(frames), np.ascontiguousarray(labels))


class SyntheticClips:
    """Fresh synthetic fluorescence clips: every SNR preset, dense and sparse, dividing.

    ``seed_base`` offsets the generator seeds; training draws seeds below
    :attr:`TrainConfig.val_seed`, validation and evaluation at or above it.
    """

    def __init__(self, length: int, shape=(256, 256), seed_base: int = 0) -> None:
        self.length = length
        self.shape = tuple(shape)
        self.seed_base = seed_base

    def sample(self, rng: np.random.Generator) -> Clip:
        seed = self.seed_base + int(rng.integers(0, 800_000))
        snr = float(rng.choice(SNR_PRESETS)) * float(rng.uniform(0.9, 1.2))
        cells = CellConfig(radius_mean=float(rng.uniform(7.0, 13.0)))
        tl = make_timelapse(
            n_frames=self.length,
            shape=self.shape,
            n_cells=int(rng.integers(4, 26)),
            snr=snr,
            seed=seed,
            division_rate=float(rng.choice([0.0, 0.02, 0.08])),
            cells=cells,
        )
        return Clip(tl.image, tl.labels)


class StackClips:
    """Random clips cut from whole stacks with labels (sessions, CTC, TIFF pairs)."""

    def __init__(self, stacks: list[Clip], length: int) -> None:
        if not stacks:
            raise InputError("data: no stacks with labels were found")
        self.stacks = stacks
        self.length = length

    def sample(self, rng: np.random.Generator) -> Clip:
        stack = self.stacks[int(rng.integers(len(self.stacks)))]
        n = len(stack.labels)
        length = min(self.length, n)
        # Start on a frame with at least one object, so the first frame can be prompted.
        starts = [t for t in range(n - length + 1) if stack.labels[t].any()]
        if not starts:
            raise InputError("data: a label stack holds no objects")
        t0 = int(rng.choice(starts))
        return Clip(
            np.asarray(stack.frames[t0 : t0 + length]), np.asarray(stack.labels[t0 : t0 + length])
        )


class MixedClips:
    """Sample from several sources with the given weights."""

    def __init__(self, sources: list, weights: list[float] | None = None) -> None:
        self.sources = sources
        w = np.asarray(weights or [1.0] * len(sources), dtype=np.float64)
        self.p = w / w.sum()

    def sample(self, rng: np.random.Generator) -> Clip:
        return self.sources[int(rng.choice(len(self.sources), p=self.p))].sample(rng)


# ------------------------------------------------------------------ readers


def _pair(frames: np.ndarray, labels: np.ndarray, where: str) -> Clip:
    if labels.ndim != 3 or frames.shape[:3] != labels.shape:
        raise InputError(
            f"data: {where}: frames {frames.shape} and labels {labels.shape} do not match "
            "(expected frames (T, H, W[, C]) and labels (T, H, W))"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"data: {where}: labels must be integers, got {labels.dtype}")
    return Clip(frames, labels)


def tiff_stack(image: str | Path, labels: str | Path) -> Clip:
    """A TIFF stack and its label stack."""
    return _pair(tifffile.imread(image), tifffile.imread(labels), str(image))


def session_stack(folder: str | Path, image: str | Path | None = None) -> Clip:
    """A saved napari-sam2 session: its image (``image`` or the path it recorded) and labels.tif."""
    folder = Path(folder)
    meta_path = folder / "session.json"
    if not meta_path.is_file():
        raise InputError(f"data: {folder} is not a napari-sam2 session (no session.json)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    path = image or (meta.get("image") or {}).get("path")
    if not path:
        raise InputError(f"data: session {folder.name} records no image file; pass the image")
    frames = tifffile.imread(path)
    axis = int(meta.get("stack_axis", 0))
    frames = np.moveaxis(frames, axis, 0)
    return _pair(frames, tifffile.imread(folder / "labels.tif"), str(folder))


def ctc_stack(images: str | Path, gt: str | Path | None = None) -> Clip:
    """A Cell Tracking Challenge sequence: ``tNNN.tif`` frames and ``man_track``/``man_seg`` labels.

    ``gt`` defaults to the sibling ``<name>_GT/TRA`` folder, then ``<name>_GT/SEG``.
    Frames without a label file (sparse SEG) are left out.
    """
    images = Path(images)
    if gt is None:
        base = images.parent / f"{images.name}_GT"
        gt = base / "TRA" if (base / "TRA").is_dir() else base / "SEG"
    gt = Path(gt)
    frames, labels = [], []
    for path in sorted(images.glob("t*.tif")):
        stem = path.stem[1:]
        for name in (f"man_track{stem}.tif", f"man_seg{stem}.tif"):
            if (gt / name).is_file():
                frames.append(tifffile.imread(path))
                labels.append(tifffile.imread(gt / name))
                break
    if not frames:
        raise InputError(f"data: no CTC frames with labels found in {images} / {gt}")
    return _pair(np.stack(frames), np.stack(labels).astype(np.int32), str(images))
