"""Peak prompts: the generator clicks each bright blob once instead of a grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2.errors import InputError
from napari_sam2.modeling.sam2 import Sam2Model
from napari_sam2.tracking import GeneratorConfig, MaskGenerator
from napari_sam2.tracking.decisions import TrackConfig, generator_for
from napari_sam2.tracking.peaks import PeakPrompts
from small_models import TINY

CENTRES = [(20.0, 30.0), (60.0, 15.0), (45.0, 70.0), (80.0, 80.0)]


def _blobs(noise: float = 0.05, seed: int = 0) -> np.ndarray:
    rr, cc = np.mgrid[:100, :100]
    img = np.zeros((100, 100), np.float32)
    for (r, c), peak in zip(CENTRES, (1.0, 0.6, 0.8, 0.4)):
        img += peak * np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * 4.0**2))
    img += np.random.default_rng(seed).normal(0, noise, img.shape).astype(np.float32)
    return img


def test_one_peak_near_each_blob_centre_brightest_first():
    found = PeakPrompts().find(_blobs())
    assert found.shape == (4, 2) and found.dtype == np.float32
    # Brightest first: the blobs' peaks are 1.0, 0.8, 0.6, 0.4.
    expected = np.array([CENTRES[i] for i in (0, 2, 1, 3)]) + 0.5
    assert np.abs(found - expected).max() <= 1.5


def test_noise_and_flat_images_give_no_peaks_and_channels_are_averaged():
    noise = np.random.default_rng(1).normal(0, 1, (80, 80))
    assert len(PeakPrompts(threshold=6.0).find(noise)) == 0
    assert PeakPrompts().find(np.full((32, 32), 7.0)).shape == (0, 2)
    rgb = np.repeat(_blobs()[..., None], 3, axis=-1)
    assert np.allclose(PeakPrompts().find(rgb), PeakPrompts().find(_blobs()), atol=1e-4)


def test_a_plateau_is_one_peak():
    img = np.zeros((40, 40), np.float32)
    img[10:20, 10:20] = 1.0
    found = PeakPrompts(sigma=0).find(img)
    assert found.shape == (1, 2) and np.allclose(found, [15.0, 15.0])


@pytest.mark.parametrize(
    "kwargs, name",
    [({"sigma": -1}, "sigma"), ({"min_distance": 0}, "min_distance"),
     ({"threshold": float("nan")}, "threshold")],
)  # fmt: skip
def test_bad_settings_name_the_argument(kwargs, name):
    with pytest.raises(InputError, match=f"^{name}:"):
        PeakPrompts(**kwargs)


def test_bad_generator_and_track_settings_name_the_argument():
    with pytest.raises(InputError, match="^peaks:"):
        GeneratorConfig(peaks=3)
    with pytest.raises(InputError, match="^clicks:"):
        generator_for("random")
    assert TrackConfig().generator == generator_for("peaks")
    assert generator_for("grid").peaks is None and not generator_for("grid").best_mask_only


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Sam2Model(TINY).eval()


def test_generator_clicks_the_peaks_and_keeps_one_mask_per_click(tiny):
    image = _blobs()
    loose = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    peaks = PeakPrompts()
    best = MaskGenerator(tiny, peaks=peaks, best_mask_only=True, **loose).generate(image)
    every = MaskGenerator(tiny, peaks=peaks, **loose).generate(image)
    clicked = peaks.find(image)
    # Every mask comes from a peak; one per click with best_mask_only, three without.
    for found in (best, every):
        assert all(np.abs(clicked - p).sum(axis=1).min() < 1e-4 for p in found.points)
    assert len(best) == len(clicked) and len(every) == 3 * len(clicked)
    # The kept mask of each click is the one with the highest predicted IoU.
    for p, iou in zip(best.points, best.predicted_iou):
        same = np.abs(every.points - p).sum(axis=1) < 1e-4
        assert np.isclose(iou, every.predicted_iou[same].max(), atol=1e-6)


def test_generator_without_peaks_returns_nothing(tiny):
    found = MaskGenerator(tiny, peaks=PeakPrompts(threshold=50.0)).generate(_blobs())
    assert len(found) == 0 and found.masks.shape == (0, 100, 100)
    assert found.label_image().shape == (100, 100) and not found.label_image().any()


def test_given_clicks_replace_the_configured_ones(tiny):
    """A caller that found the peaks already (the tracker) passes them: same masks."""
    image = _blobs()
    loose = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, best_mask_only=True)
    gen = MaskGenerator(tiny, peaks=PeakPrompts(), **loose)
    own, given = gen.generate(image), gen.generate(image, clicks=PeakPrompts().find(image))
    assert len(own) == len(given) > 0
    np.testing.assert_array_equal(own.masks, given.masks)
    grid = MaskGenerator(tiny, points_per_side=4, **loose)  # clicks override a grid too
    one = grid.generate(image, clicks=[[20.5, 30.5]])
    assert len(one) <= 1 and all(np.allclose(p, [20.5, 30.5]) for p in one.points)
