"""FrameResult upsamples each object only where it can be > 0, exactly as a full upsampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_sam2.engine.frame_result import FrameResult, bilinear_weights


def full(low: np.ndarray, shape) -> np.ndarray:
    t = torch.from_numpy(low)[:, None]
    return F.interpolate(t, shape, mode="bilinear", align_corners=False)[:, 0].numpy()


@pytest.mark.parametrize(("n_out", "n_in"), [(90, 16), (256, 64), (100, 64), (37, 64), (64, 64)])
def test_bilinear_weights_match_torch_interpolate(n_out, n_in):
    x = np.random.default_rng(0).normal(size=(n_in, 5)).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x.T)[:, None], n_out, mode="linear", align_corners=False)
    np.testing.assert_allclose(bilinear_weights(n_out, n_in) @ x, ref[:, 0].numpy().T, atol=1e-5)


def blobs(rng, n, q):
    """(n, q, q) low-res logits: a few positive blobs on a negative floor, and one empty object."""
    yy, xx = np.mgrid[:q, :q]
    low = np.full((n, q, q), -8.0, np.float32)
    for i in range(n - 1):
        cy, cx, r = rng.uniform(0, q), rng.uniform(0, q), rng.uniform(1.5, q / 4)
        low[i] = (r - np.hypot(yy - cy, xx - cx)).astype(np.float32) * 2.0
    return low


@pytest.mark.parametrize("shape", [(90, 140), (256, 256), (33, 200)])
def test_crops_labels_and_masks_equal_the_full_upsampling(shape):
    rng = np.random.default_rng(1)
    low = blobs(rng, 7, 16)
    r = FrameResult(
        4,
        (3, 9, 1, 5, 8, 2, 6),
        low,
        np.array([1, 1, -1, 1, 1, 1, 1], np.float32),
        frame_shape=shape,
    )
    ref = full(low, shape)
    np.testing.assert_allclose(r.logits, ref)
    for i in range(7):
        rows, cols, crop = r.object_logits(i)
        np.testing.assert_allclose(crop, ref[i][rows, cols], atol=1e-5)
        outside = np.ones(shape, bool)
        outside[rows, cols] = False
        assert (ref[i][outside] <= 0).all()  # nothing positive is left out of the crop
        np.testing.assert_array_equal(r.object_mask(i), ref[i] > 0)
    assert r.object_logits(6)[2].shape == (0, 0)  # the empty object
    ids = np.array(r.obj_ids)
    expected = np.where(ref.max(0) > 0, ids[ref.argmax(0)], 0)
    np.testing.assert_array_equal(r.label_image(), expected)
    present = ref.copy()
    present[2] = -1.0  # object 1 is judged absent (score -1)
    expected = np.where(present.max(0) > 0, ids[present.argmax(0)], 0)
    np.testing.assert_array_equal(r.label_image(present_only=True), expected)


def test_full_resolution_logits_are_used_as_given():
    logits = np.full((2, 5, 6), -1.0, np.float32)
    logits[0, 1:3, 2:4] = 2.0
    logits[1, 2:4, 3:5] = 3.0
    r = FrameResult(0, (7, 8), logits, np.ones(2, np.float32))
    assert r.shape == (5, 6) and r.logits is not None
    rows, cols, crop = r.object_logits(0)
    assert (rows, cols) == (slice(1, 3), slice(2, 4)) and (crop == 2.0).all()
    labels = r.label_image()
    assert labels[1, 2] == 7 and labels[2, 3] == 8 and labels[0, 0] == 0


def test_subset_keeps_the_chosen_objects_and_the_frame_shape():
    low = blobs(np.random.default_rng(2), 3, 16)
    r = FrameResult(2, (4, 5, 6), low, np.array([1.0, 2.0, 3.0], np.float32), frame_shape=(40, 50))
    s = r.subset([2, 0])
    assert s.obj_ids == (6, 4) and s.shape == (40, 50)
    np.testing.assert_array_equal(s.object_scores, [3.0, 1.0])
    np.testing.assert_array_equal(s.logits, r.logits[[2, 0]])


def test_with_ids_renames_objects_and_keeps_everything_else():
    low = blobs(np.random.default_rng(3), 2, 16)
    r = FrameResult(1, (1, 2), low, np.array([1.0, -2.0], np.float32), frame_shape=(40, 50))
    s = r.with_ids(i + 10 for i in r.obj_ids)
    assert s.obj_ids == (11, 12) and s.frame == 1 and s.shape == (40, 50)
    np.testing.assert_array_equal(
        s.label_image(), np.where(r.label_image() > 0, r.label_image() + 10, 0)
    )
    with pytest.raises(ValueError, match="2 ids needed, got 1"):
        r.with_ids([5])
