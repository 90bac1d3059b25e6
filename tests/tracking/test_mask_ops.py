"""Mask helpers of the generator: NMS, boxes, stability, small regions, label image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2 import build_model
from napari_sam2.errors import InputError
from napari_sam2.tracking import GeneratedMasks, MaskGenerator, mask_ops


def test_box_nms_matches_torchvision_semantics():
    from torchvision.ops.boxes import batched_nms  # the test stand-in (tests/_stubs)

    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(1, 60))
        lo = rng.integers(0, 80, (n, 2))
        boxes = np.concatenate([lo, lo + rng.integers(0, 40, (n, 2))], axis=1)
        scores = rng.choice([0.1, 0.5, 0.9], n) if trial % 2 else rng.random(n)  # ties too
        ours = mask_ops.box_nms(boxes, scores, 0.5)
        ref = batched_nms(
            torch.as_tensor(boxes).float(), torch.as_tensor(scores), torch.zeros(n), 0.5
        )
        assert ours.tolist() == ref.tolist()


def test_box_nms_drops_overlaps_and_keeps_order():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    keep = mask_ops.box_nms(boxes, [0.5, 0.9, 0.1], 0.7)
    assert keep.tolist() == [1, 2]
    assert mask_ops.box_nms(np.zeros((0, 4)), [], 0.5).tolist() == []


def test_mask_boxes_and_stability():
    masks = torch.zeros(3, 8, 9, dtype=torch.bool)
    masks[0, 2:5, 3:7] = True
    masks[1, 7, 8] = True
    boxes = mask_ops.mask_boxes(masks)
    assert boxes.tolist() == [[2, 3, 4, 6], [7, 8, 7, 8], [0, 0, 0, 0]]
    logits = torch.full((1, 4, 4), -5.0)
    logits[0, :2, :2] = 5.0
    logits[0, 2, :2] = 0.5  # inside the outer (-1) mask only
    assert mask_ops.stability_score(logits, 0.0, 1.0).item() == pytest.approx(4 / 6)


def test_remove_small_regions():
    mask = np.zeros((20, 20), bool)
    mask[2:12, 2:12] = True
    mask[5, 5] = False  # a 1-pixel hole
    mask[16:18, 16:18] = True  # a 4-pixel island
    out, changed = mask_ops.remove_small_regions(mask, 5)
    assert changed and out[5, 5] and not out[16:18, 16:18].any()
    assert out.sum() == 100
    same, changed = mask_ops.remove_small_regions(out, 5)
    assert not changed and np.array_equal(same, out)
    tiny = np.zeros((10, 10), bool)
    tiny[1, 1] = tiny[5:7, 5] = True  # every island small: the largest stays
    out, _ = mask_ops.remove_small_regions(tiny, 5)
    assert out.sum() == 2 and out[5, 5]


def test_crop_boxes_cover_the_image():
    boxes, layers = mask_ops.crop_boxes((100, 150), 2, 0.3)
    assert boxes[0] == (0, 0, 100, 150) and layers.count(1) == 4 and layers.count(2) == 16
    cover = np.zeros((100, 150), int)
    for r0, c0, r1, c1 in boxes[1:5]:
        cover[r0:r1, c0:c1] += 1
    assert cover.min() >= 1


def test_label_image_smallest_wins():
    masks = np.zeros((2, 10, 10), bool)
    masks[0] = True
    masks[1, 2:4, 2:4] = True
    found = GeneratedMasks(
        masks, np.ones(2, np.float32), np.ones(2, np.float32), np.zeros((2, 4), np.int64),
        np.zeros((2, 2), np.float32), np.zeros((2, 4), np.int64),
    )  # fmt: skip
    labels = found.label_image()
    assert labels.dtype == np.int32 and labels[2, 2] == 2 and labels[0, 0] == 1
    assert len(found.select([1])) == 1


def test_generator_any_dtype_and_bad_settings():
    torch.manual_seed(0)
    model = build_model("sam2.1_hiera_tiny", image_size=64)
    frame = np.random.default_rng(0).integers(0, 4000, (48, 40)).astype(np.uint16)
    gen = MaskGenerator(
        model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0,
        box_nms_thresh=1.0, min_mask_region_area=4,
    )  # fmt: skip
    found = gen.generate(frame)
    assert found.masks.shape[1:] == (48, 40) and found.masks.dtype == bool
    assert found.label_image().shape == (48, 40)
    strict = MaskGenerator(model, points_per_side=2, pred_iou_thresh=1.0)
    none = strict.generate(frame)  # nothing passes: an empty, well-formed result
    assert none.masks.shape == (0, 48, 40) and none.areas.shape == (0,)
    assert not none.label_image().any()
    with pytest.raises(InputError, match="points_per_side"):
        MaskGenerator(model, points_per_side=0)
    with pytest.raises(InputError, match="pred_iou_thresh"):
        MaskGenerator(model, pred_iou_thresh=2.0)
    with pytest.raises(InputError, match="image"):
        gen.generate(np.zeros((2, 3, 4, 5)))
