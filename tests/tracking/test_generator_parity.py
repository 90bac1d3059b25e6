"""Parity of ``MaskGenerator`` with the reference ``SAM2AutomaticMaskGenerator`` (sam2 1.1.0).

Both run the same random-init sam2.1_hiera_tiny weights (the reference's own init,
saved as an official checkpoint and loaded with ``load_model``). Random weights
give faint logits around 0, so the thresholds are loosened (mask threshold 0.1,
stability offset 0.02) until several distinct masks survive, with and without a
crop layer. The reference's box NMS comes from the test stand-in for torchvision
(tests/_stubs/torchvision/ops), written independently of ours.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.oracle import reference_model, save_checkpoint
from napari_sam2 import load_model
from napari_sam2.tracking import MaskGenerator

pytestmark = pytest.mark.reference

MODEL_SIZE = 128
SETTINGS = dict(
    points_per_side=8,
    pred_iou_thresh=0.0,
    stability_score_thresh=0.3,
    stability_score_offset=0.02,
    box_nms_thresh=0.7,
)


def _blobs() -> np.ndarray:
    """A 256 x 256 uint8 RGB image: four bright discs on a dark background."""
    rng = np.random.default_rng(3)
    img = np.full((256, 256, 3), 20, np.uint8)
    yy, xx = np.mgrid[:256, :256]
    for cy, cx, r in [(60, 70, 18), (170, 60, 22), (120, 180, 25), (200, 200, 15)]:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(150, 255, 3)
    return img


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    ref = reference_model("sam2.1_hiera_tiny", MODEL_SIZE)
    path = save_checkpoint(ref, tmp_path_factory.mktemp("gen") / "tiny.pt")
    return ref, load_model(path, image_size=MODEL_SIZE)


def _reference(ref_model, image, **kwargs):
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    gen = SAM2AutomaticMaskGenerator(ref_model, **kwargs)
    s = MODEL_SIZE
    gen.predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
    return gen.generate(image)


@pytest.mark.parametrize(
    "extra",
    [
        dict(mask_threshold=0.1, crop_n_layers=0),
        dict(mask_threshold=0.2, crop_n_layers=0),
        pytest.param(dict(mask_threshold=0.1, crop_n_layers=1), marks=pytest.mark.slow),
        pytest.param(
            dict(mask_threshold=0.2, crop_n_layers=1, points_per_batch=50), marks=pytest.mark.slow
        ),
    ],
    ids=["t0.1", "t0.2", "t0.1-crops", "t0.2-crops-batch50"],
)
def test_generator_matches_reference(models, extra):
    ref_model, ours_model = models
    image = _blobs()
    kwargs = {**SETTINGS, **extra}
    with torch.inference_mode():
        ref = _reference(ref_model, image, **kwargs)
    ours = MaskGenerator(ours_model, **kwargs).generate(image)

    assert len(ref) >= 3, "thresholds too strict: the comparison needs several masks"
    assert len(ours) == len(ref)
    ref_masks = np.stack([a["segmentation"] for a in ref]).astype(bool)
    agreement = (ours.masks == ref_masks).mean(axis=(1, 2))
    assert agreement.min() >= 0.999
    ref_iou = np.array([a["predicted_iou"] for a in ref])
    ref_stab = np.array([a["stability_score"] for a in ref])
    assert np.abs(ours.predicted_iou - ref_iou).max() <= 1e-4
    assert np.abs(ours.stability_score - ref_stab).max() <= 1e-4
    # Boxes (x, y, w, h) -> ours (row0, col0, row1, col1); the prompt points (x, y) -> (row, col).
    ref_boxes = np.array([[y, x, y + h, x + w] for x, y, w, h in (a["bbox"] for a in ref)])
    assert np.array_equal(ours.boxes, ref_boxes)
    ref_points = np.array([a["point_coords"][0][::-1] for a in ref])
    assert np.allclose(ours.points, ref_points, atol=1e-3)
    ref_crops = np.array([[y, x, y + h, x + w] for x, y, w, h in (a["crop_box"] for a in ref)])
    assert np.array_equal(ours.crop_boxes, ref_crops)
    assert len(set(map(tuple, ours.boxes.tolist()))) >= 2, "all masks share one box"
