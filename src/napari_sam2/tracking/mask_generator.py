"""Automatic mask generation ("segment everything") for one image: ``MaskGenerator``.

A grid of single-point prompts (or, with ``peaks``, one click on each bright
blob) is decoded in batches against the image embedding (three masks per
point; with ``best_mask_only`` the one a click would return). Masks are kept when the predicted IoU
exceeds ``pred_iou_thresh`` and the stability score reaches
``stability_score_thresh``; masks touching an inner crop edge are dropped;
duplicates are removed by box non-maximum suppression, first within each crop
(by predicted IoU), then between crops (smaller crops win). Optionally, holes
and islands smaller than ``min_mask_region_area`` are removed afterwards and
NMS runs once more (unchanged masks win).

With ``min_mask_region_area=0`` the result equals the reference
``SAM2AutomaticMaskGenerator`` (sam2 1.1.0) for 8-bit RGB images. Note that
the reference never applies its own small-region step in ``generate`` (it only
hands the area to a CUDA-only hole filler), so there is nothing to compare for
``min_mask_region_area > 0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.preprocess import as_channels_last, choose_intensity, to_model_input, to_unit_rgb
from ..errors import InputError
from ..modeling.sam2 import Sam2Model
from . import mask_ops
from .peaks import PeakPrompts

_UPSAMPLE_CHUNK = 16  # masks upsampled to full resolution at once


@dataclass(frozen=True)
class GeneratorConfig:
    """Settings of :class:`MaskGenerator` (names and defaults as in SAM 2's generator).

    points_per_side: grid points along each side (points_per_side**2 prompts).
    points_per_batch: prompts decoded at once (memory vs speed).
    pred_iou_thresh: keep masks whose predicted IoU is above this (0 disables).
    stability_score_thresh: keep masks whose stability score is at least this (0 disables).
    stability_score_offset: logit shift used for the stability score.
    mask_threshold: logit threshold that binarises masks.
    box_nms_thresh: box IoU above which a lower-scored mask of the same crop is dropped.
    crop_n_layers: extra crop layers (layer i: 2**i x 2**i crops) for small objects.
    crop_nms_thresh: box IoU for de-duplicating masks between crops.
    crop_overlap_ratio: overlap of neighbouring crops, fraction of the short side.
    crop_n_points_downscale_factor: layer i uses points_per_side / factor**i points.
    min_mask_region_area: holes and islands below this area (pixels) are removed (0: off).
    multimask: three masks per point (True) or one.
    peaks: click the image's bright blobs (:class:`~napari_sam2.tracking.peaks.PeakPrompts`)
        instead of the grid (``points_per_side`` and the crop layers' grids are then
        unused); None: the grid, as the reference does.
    best_mask_only: of each prompt's masks keep only the one with the highest
        predicted IoU (the mask a click returns interactively), before the filters.
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    mask_threshold: float = 0.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0
    multimask: bool = True
    peaks: PeakPrompts | None = None
    best_mask_only: bool = False

    def __post_init__(self) -> None:
        for name in ("points_per_side", "points_per_batch", "crop_n_points_downscale_factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name}: must be a positive integer, got {value!r}")
        for name in ("crop_n_layers", "min_mask_region_area"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise InputError(f"{name}: must be an integer >= 0, got {value!r}")
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise InputError(f"{name}: must be in [0, 1], got {value!r}")
        if self.peaks is not None and not isinstance(self.peaks, PeakPrompts):
            raise InputError(f"peaks: must be a PeakPrompts or None, got {self.peaks!r}")


@dataclass(frozen=True)
class GeneratedMasks:
    """Masks found in one image, best first within each crop.

    masks: (N, H, W) bool. predicted_iou, stability_score: (N,) float32.
    boxes: (N, 4) int64 (row0, col0, row1, col1), inclusive. points: (N, 2)
    float32 (row, col), the prompt that produced each mask. crop_boxes: (N, 4)
    int64 (row0, col0, row1, col1), exclusive ends.
    """

    masks: np.ndarray
    predicted_iou: np.ndarray
    stability_score: np.ndarray
    boxes: np.ndarray
    points: np.ndarray
    crop_boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def areas(self) -> np.ndarray:
        """(N,) int64 pixel counts."""
        return self.masks.sum(axis=(1, 2), dtype=np.int64)

    def select(self, keep) -> GeneratedMasks:
        """A subset (boolean mask or indices), in the given order."""
        return GeneratedMasks(*(getattr(self, f.name)[keep] for f in fields(self)))

    def label_image(self) -> np.ndarray:
        """(H, W) int32 instance labels 1..N (label i+1 is mask i), 0 background.

        Overlaps: masks are painted from the largest to the smallest, so a
        pixel belongs to the smallest mask covering it (a cell inside a larger
        cluster mask stays visible). A mask hidden entirely has no pixels.
        """
        h, w = self.masks.shape[1:]
        out = np.zeros((h, w), np.int32)
        for i in np.argsort(-self.areas, kind="stable"):
            out[self.masks[i]] = i + 1
        return out


class MaskGenerator:
    """Find every object in an image with SAM 2 and a grid of point prompts.

    >>> gen = MaskGenerator(model, points_per_side=16, pred_iou_thresh=0.7)
    >>> found = gen.generate(image)        # (H, W) or (H, W, C), any dtype
    >>> found.masks.shape, found.label_image().max()

    Keyword arguments are the fields of :class:`GeneratorConfig`.
    """

    def __init__(self, model: Sam2Model, config: GeneratorConfig | None = None, **kwargs) -> None:
        if config is not None and kwargs:
            raise InputError("config: give a GeneratorConfig or keyword settings, not both")
        try:
            self.cfg = config or GeneratorConfig(**kwargs)
        except TypeError as err:
            raise InputError(f"MaskGenerator: {err}") from None
        self.model = model
        cfg = self.cfg
        self._grids = mask_ops.layer_point_grids(
            cfg.points_per_side, cfg.crop_n_layers, cfg.crop_n_points_downscale_factor
        )

    @torch.inference_mode()
    def generate(
        self,
        image: np.ndarray,
        contrast_limits: Sequence[float] | None = None,
        channel_axis: int | None = None,
        clicks: np.ndarray | None = None,
    ) -> GeneratedMasks:
        """All masks of ``image`` ((H, W) or (H, W, C), any dtype).

        8-bit RGB is scaled as the reference does; other data by
        ``contrast_limits`` or robust percentiles of the whole image (the same
        window for every crop). ``clicks``: (N, 2) (row, col) image pixels to
        click instead of the configured grid or peaks (e.g. peaks already found
        by the caller on this image).
        """
        hwc = as_channels_last(np.asarray(image), channel_axis)
        h, w = hwc.shape[:2]
        if h < 2 or w < 2:
            raise InputError(f"image: too small, shape {np.shape(image)}")
        intensity = choose_intensity(hwc, contrast_limits)
        crops, layers = mask_ops.crop_boxes(
            (h, w), self.cfg.crop_n_layers, self.cfg.crop_overlap_ratio
        )
        if clicks is None and self.cfg.peaks is not None:
            clicks = self.cfg.peaks.find(hwc)
        if clicks is not None:
            clicks = np.asarray(clicks, np.float32).reshape(-1, 2)
        parts = [
            self._crop(hwc, intensity, crop, self._prompts(crop, layer, clicks))
            for crop, layer in zip(crops, layers)
        ]
        found = _concat(parts, (h, w))
        if len(crops) > 1 and len(found):
            # Prefer masks from smaller crops.
            crop_area = mask_ops.box_area(torch.as_tensor(found.crop_boxes)).double()
            keep = mask_ops.box_nms(found.boxes, 1.0 / crop_area.numpy(), self.cfg.crop_nms_thresh)
            found = found.select(keep)
        if self.cfg.min_mask_region_area > 0 and len(found):
            found = self._clean_small_regions(found)
        return found

    # -- one crop -------------------------------------------------------------

    def _prompts(self, crop, layer: int, clicks: np.ndarray | None) -> np.ndarray:
        """(N, 2) prompt points (row, col) in the crop's pixels: its grid, or the clicks in it."""
        r0, c0, r1, c1 = crop
        if clicks is None:
            return self._grids[layer] * np.array([r1 - r0, c1 - c0])
        rows, cols = clicks[:, 0], clicks[:, 1]
        inside = (rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)
        return clicks[inside] - np.array([r0, c0], np.float32)

    def _crop(self, hwc, intensity, crop, prompts: np.ndarray) -> dict:
        """Masks of one crop's ``prompts`` (N, 2) (row, col) crop pixels, de-duplicated.

        Masks and boxes are in crop-local pixels, ``points`` in image pixels.
        """
        r0, c0, r1, c1 = crop
        ch, cw = r1 - r0, c1 - c0
        if len(prompts) == 0:
            return _empty_part(crop)
        feats = self._embed(hwc[r0:r1, c0:c1], intensity)
        # Crop pixels to model-input (x, y), as the reference scales grid points.
        points = torch.as_tensor(prompts, dtype=torch.float32)
        scale = self.model.cfg.image_size
        xy = torch.stack([points[:, 1] / cw, points[:, 0] / ch], dim=-1) * scale
        step = self.cfg.points_per_batch
        batches = [
            self._batch(feats, xy[i : i + step], points[i : i + step], crop, hwc.shape[:2])
            for i in range(0, len(points), step)
        ]
        data = {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
        keep = mask_ops.box_nms(data["boxes"].numpy(), data["iou"].numpy(), self.cfg.box_nms_thresh)
        keep_t = torch.as_tensor(keep, dtype=torch.long)
        data = {k: v[keep_t] for k, v in data.items()}
        data["points"] = data["points"] + torch.tensor([r0, c0], dtype=torch.float32)
        data["crop"] = crop
        return data

    def _embed(self, crop_hwc: np.ndarray, intensity):
        model = self.model
        x = to_model_input(to_unit_rgb(crop_hwc, intensity), model.cfg.image_size)
        feats = model.encode_image(x.to(model.device))
        # A single image: "no memory" features, as the image predictor uses.
        feats.fpn[2] = feats.fpn[2] + model.no_mem_embed.view(1, -1, 1, 1)
        return feats

    def _decode(self, feats, xy: torch.Tensor):
        """Point prompts (B, 2) model (x, y) -> low-res logits (B*M, S/4, S/4), IoUs (B*M,)."""
        model = self.model
        dev = model.device
        labels = torch.ones(len(xy), 1, dtype=torch.int32, device=dev)
        enc = model.sam_prompt_encoder
        sparse, dense = enc(xy[:, None].to(dev), labels, None)
        out = model.sam_mask_decoder(
            feats.fpn[2],
            (feats.fpn[0], feats.fpn[1]),
            enc.dense_pe(),
            sparse,
            dense,
            multimask=self.cfg.multimask,
        )
        return out.masks.flatten(0, 1).float(), out.ious.flatten(0, 1).float(), out.masks.shape[1]

    def _batch(self, feats, xy, points, crop, image_hw) -> dict:
        """Decode, score, filter one batch of prompts; masks at the crop's resolution."""
        cfg = self.cfg
        r0, c0, r1, c1 = crop
        low, iou, m = self._decode(feats, xy)
        if cfg.best_mask_only and m > 1:
            best = iou.view(-1, m).argmax(dim=1) + torch.arange(0, len(iou), m, device=iou.device)
            low, iou, m = low[best], iou[best], 1
        pts = points.repeat_interleave(m, dim=0)
        if cfg.pred_iou_thresh > 0:
            keep = (iou > cfg.pred_iou_thresh).cpu()
            low, iou, pts = low[keep.to(low.device)], iou[keep.to(iou.device)], pts[keep]
        masks, stability, kept = [], [], []
        for i in range(0, len(low), _UPSAMPLE_CHUNK):  # full-resolution logits, a few at a time
            logits = F.interpolate(
                low[i : i + _UPSAMPLE_CHUNK, None],
                (r1 - r0, c1 - c0),
                mode="bilinear",
                align_corners=False,
            )[:, 0]
            stab = mask_ops.stability_score(logits, cfg.mask_threshold, cfg.stability_score_offset)
            ok = stab >= cfg.stability_score_thresh if cfg.stability_score_thresh > 0 else None
            if ok is not None:
                logits, stab = logits[ok], stab[ok]
                kept.append(torch.nonzero(ok.cpu())[:, 0] + i)
            else:
                kept.append(torch.arange(i, i + len(logits)))
            masks.append((logits > cfg.mask_threshold).cpu())
            stability.append(stab.float().cpu())
        idx = torch.cat(kept) if kept else torch.zeros(0, dtype=torch.long)
        masks_t = torch.cat(masks) if masks else torch.zeros(0, r1 - r0, c1 - c0, dtype=torch.bool)
        stab_t = torch.cat(stability) if stability else torch.zeros(0)
        iou, pts = iou.cpu()[idx], pts[idx]
        boxes = mask_ops.mask_boxes(masks_t)
        inner = ~mask_ops.near_crop_edge(boxes, crop, image_hw)
        return {
            "masks": masks_t[inner],
            "iou": iou[inner],
            "stability": stab_t[inner],
            "boxes": boxes[inner],
            "points": pts[inner],
        }

    # -- small regions ----------------------------------------------------------

    def _clean_small_regions(self, found: GeneratedMasks) -> GeneratedMasks:
        """Remove small holes/islands, then NMS again preferring unchanged masks."""
        masks = found.masks.copy()
        unchanged = np.zeros(len(masks))
        for i, mask in enumerate(masks):
            masks[i], changed = mask_ops.remove_small_regions(mask, self.cfg.min_mask_region_area)
            unchanged[i] = 0.0 if changed else 1.0
        boxes = mask_ops.mask_boxes(torch.from_numpy(masks)).numpy()
        keep = mask_ops.box_nms(boxes, unchanged, self.cfg.box_nms_thresh)
        cleaned = GeneratedMasks(
            masks, found.predicted_iou, found.stability_score, boxes, found.points, found.crop_boxes
        )
        return cleaned.select(keep)


def _empty_part(crop) -> dict:
    """The :meth:`MaskGenerator._crop` result of a crop without prompts."""
    r0, c0, r1, c1 = crop
    return {
        "masks": torch.zeros(0, r1 - r0, c1 - c0, dtype=torch.bool),
        "iou": torch.zeros(0),
        "stability": torch.zeros(0),
        "boxes": torch.zeros(0, 4, dtype=torch.int64),
        "points": torch.zeros(0, 2),
        "crop": crop,
    }


def _concat(parts: list[dict], hw: tuple[int, int]) -> GeneratedMasks:
    """Join per-crop results into whole-image masks and boxes."""
    h, w = hw
    masks, boxes, crops = [], [], []
    for part in parts:
        r0, c0, r1, c1 = part["crop"]
        n = len(part["iou"])
        full = np.zeros((n, h, w), bool)
        full[:, r0:r1, c0:c1] = part["masks"].numpy()
        masks.append(full)
        boxes.append(part["boxes"].numpy() + np.array([r0, c0, r0, c0]))
        crops.append(np.tile(np.array([r0, c0, r1, c1], np.int64), (n, 1)))
    return GeneratedMasks(
        masks=np.concatenate(masks),
        predicted_iou=np.concatenate([p["iou"].numpy() for p in parts]).astype(np.float32),
        stability_score=np.concatenate([p["stability"].numpy() for p in parts]).astype(np.float32),
        boxes=np.concatenate(boxes).astype(np.int64),
        points=np.concatenate([p["points"].numpy() for p in parts]).astype(np.float32),
        crop_boxes=np.concatenate(crops).astype(np.int64),
    )
