"""The tracking rules as pure functions on synthetic masks (no model)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from napari_sam2.engine.frame_result import FrameResult
from napari_sam2.errors import InputError
from napari_sam2.tracking import decisions
from napari_sam2.tracking.decisions import TrackConfig

CFG = TrackConfig(min_area=5, split_min_fraction=0.2, shrink_ratio=0.75, contact_distance=2)


def disc(center, radius, shape=(64, 64)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def occupancy(logits, ids, scores):
    """The occupancy rule as the tracker applies it (FrameResult.label_image(present_only=True))."""
    result = FrameResult(
        0, tuple(ids), np.asarray(logits, np.float32), np.asarray(scores, np.float32)
    )
    return result.label_image(present_only=True)


def test_occupancy_highest_positive_logit_wins_and_absent_tracks_take_nothing():
    logits = np.full((3, 4, 4), -1.0, np.float32)
    logits[0, :, :2] = 2.0
    logits[1, :, 1:3] = 3.0  # overlaps track 0 in column 1 with a higher logit
    logits[2] = 5.0  # everywhere, but judged absent
    labels = occupancy(logits, [7, 8, 9], [1.0, 0.5, -0.1])
    assert labels.dtype == np.int32
    assert labels[:, 0].tolist() == [7] * 4
    assert labels[:, 1].tolist() == [8] * 4  # the overlap goes to the higher logit
    assert labels[:, 2].tolist() == [8] * 4 and labels[:, 3].tolist() == [0] * 4
    tie = occupancy(np.ones((2, 2, 2)), [3, 4], [1, 1])
    assert (tie == 3).all()  # equal logits: the first (older) track
    assert not occupancy(logits, [7, 8, 9], [-1, -1, -1]).any()


def test_split_into_two_big_components_is_a_division():
    mother = disc((32, 20), 8) | disc((32, 44), 8)
    pair = decisions.split_daughters(mother, recent_area=400, cfg=CFG)
    assert pair is not None
    a, b = pair
    assert a.sum() == b.sum() == disc((32, 20), 8).sum() and not (a & b).any()


def test_small_fragment_is_not_a_division():
    mask = disc((32, 32), 10) | disc((5, 5), 2)  # a 13-pixel fragment next to a 317-pixel cell
    assert decisions.split_daughters(mask, recent_area=317, cfg=CFG) is None
    assert decisions.split_daughters(disc((32, 32), 10), 317, CFG) is None


def test_new_objects_only_where_nothing_is_labelled():
    labels = np.zeros((64, 64), np.int32)
    labels[disc((20, 20), 8)] = 1
    cands = np.stack(
        [
            disc((20, 21), 8),  # the tracked cell again: covered
            disc((45, 45), 7),  # a new cell
            disc((45, 47), 7),  # a duplicate of the new cell: covered by it
            np.ones((64, 64), bool),  # background: too large
            disc((5, 60), 1.0) & ~disc((4, 60), 0),  # 4 pixels: too small
        ]
    )
    new = decisions.new_objects(cands, labels, CFG)
    assert len(new) == 1 and np.array_equal(new[0], disc((45, 45), 7))


def test_new_object_partly_covered_keeps_its_free_pixels():
    labels = np.zeros((64, 64), np.int32)
    labels[:, :30] = 3
    cand = disc((30, 40), 10)  # about 10 % of it lies in the labelled half
    (new,) = decisions.new_objects(cand[None], labels, CFG)
    assert not (new & (labels > 0)).any() and new.sum() == (cand & (labels == 0)).sum()


def test_appearance_next_to_shrunk_track_is_a_division():
    labels = np.zeros((64, 64), np.int32)
    labels[disc((32, 22), 6)] = 4  # shrank: the other half is now unlabelled
    labels[disc((10, 55), 6)] = 5  # far away, also shrunk
    newcomer = disc((32, 36), 6)  # 2 px gap from track 4
    assert decisions.shrunk(113, [300, 310], 0.75)
    assert not decisions.shrunk(290, [300, 310], 0.75)
    assert decisions.division_mother(newcomer, labels, {4, 5}, distance=2) == 4
    assert decisions.division_mother(newcomer, labels, {5}, distance=2) is None
    assert decisions.division_mother(newcomer, labels, set(), distance=2) is None
    far = disc((32, 50), 5)
    assert decisions.division_mother(far, labels, {4}, distance=2) is None


def test_config_is_checked():
    with pytest.raises(InputError, match="detect_every"):
        TrackConfig(detect_every=0)
    with pytest.raises(InputError, match="shrink_ratio"):
        TrackConfig(shrink_ratio=1.5)


def test_two_generator_masks_tiling_a_track_are_a_division():
    left, right = disc((32, 26), 6), disc((32, 37), 6)  # touching daughters
    track = left | right
    cands = np.stack([track, left, disc((32, 27), 6), right])  # whole cell, duplicate of left
    pair = decisions.contained_daughters(cands, track, recent_area=track.sum(), cfg=CFG)
    assert pair is not None
    a, b = pair
    assert not (a & b).any() and (a | b).sum() >= 0.7 * track.sum()
    assert decisions.contained_daughters(cands[:1], track, track.sum(), CFG) is None
    part = disc((32, 26), 3)[None]  # one small part: no division
    assert decisions.contained_daughters(part, track, track.sum(), CFG) is None


def _two_blobs(second_peak: float = 1.0, gap: float = 10.0):
    """Two touching round blobs (sigma 3 px) side by side, as one mask, and their image."""
    from napari_sam2.tracking.peaks import PeakPrompts

    rr, cc = np.mgrid[:60, :60]
    img = np.exp(-((rr - 30) ** 2 + (cc - 30 + gap / 2) ** 2) / 18.0)
    img = img + second_peak * np.exp(-((rr - 30) ** 2 + (cc - 30 - gap / 2) ** 2) / 18.0)
    mask = img > 0.2 * img.max()
    finder = PeakPrompts(sigma=1.0, min_distance=3)
    smooth = finder.smooth(img)
    return mask, smooth, finder.find_smoothed(smooth)


def test_peak_division_splits_a_mask_holding_two_alike_peaks_at_the_dip():
    from napari_sam2.tracking.decisions import peak_daughters

    mask, smooth, peaks = _two_blobs()
    cfg = TrackConfig(min_area=5)
    pair = peak_daughters(mask, smooth, peaks, mask.sum(), cfg)
    assert pair is not None
    a, b = pair
    assert not (a & b).any() and ((a | b) == mask).all()
    # The cut runs at the dip between the blobs (column 30; its pixels go to one
    # side), each side a daughter.
    cols = np.nonzero(mask.any(axis=0))[0]
    assert abs(int(a.sum()) - int(b.sum())) <= mask[:, 30].sum()
    assert {a[:, cols[0]].any(), b[:, cols[0]].any()} == {True, False}
    assert not a[:, 25].any() or not a[:, 35].any()


def test_peak_division_needs_two_alike_peaks_with_a_dip():
    from napari_sam2.tracking.decisions import peak_daughters

    cfg = TrackConfig(min_area=5)
    mask, smooth, peaks = _two_blobs(gap=3.0)  # one round blob: one peak
    assert len(peaks) == 1 and peak_daughters(mask, smooth, peaks, mask.sum(), cfg) is None
    mask, smooth, peaks = _two_blobs(second_peak=0.3)  # unlike sisters
    assert len(peaks) == 2 and peak_daughters(mask, smooth, peaks, mask.sum(), cfg) is None
    mask, smooth, peaks = _two_blobs()
    deep = replace(cfg, saddle_depth=0.9)  # the dip is shallower than 90 %
    assert peak_daughters(mask, smooth, peaks, mask.sum(), deep) is None
    # Peaks outside the track do not count.
    left = mask & (np.arange(60)[None, :] < 30)
    assert peak_daughters(left, smooth, peaks, left.sum(), cfg) is None


def test_split_into_a_cell_and_an_unlike_piece_is_not_a_division():
    # both parts pass the split floor, but one is under half the other (sister ratio)
    mask = disc((32, 18), 10) | disc((32, 48), 6)
    assert decisions.split_daughters(mask, recent_area=430, cfg=CFG) is None
    alike = disc((32, 18), 8) | disc((32, 48), 7)
    assert decisions.split_daughters(alike, recent_area=400, cfg=CFG) is not None


def test_mask_aspect_is_one_for_a_disc_and_about_two_for_touching_discs():
    assert decisions.mask_aspect(disc((32, 32), 10)) == pytest.approx(1.0, abs=0.01)
    peanut = disc((32, 25), 7) | disc((32, 39), 7)
    assert 1.9 < decisions.mask_aspect(peanut) < 2.5
    line = np.zeros((64, 64), bool)
    line[10, 5:45] = True
    assert np.isfinite(decisions.mask_aspect(line)) and decisions.mask_aspect(line) > 10
    assert np.isnan(decisions.mask_aspect(np.zeros((8, 8), bool)))


def test_shape_division_splits_a_round_track_that_became_a_peanut_at_its_waist():
    left, right = disc((32, 25), 7), disc((32, 39), 7)
    peanut = left | right
    area = float(disc((32, 32), 10).sum())  # the rounded mother's area, about the same
    pair = decisions.shape_daughters(peanut, recent_area=area, cfg=CFG)
    assert pair is not None
    a, b = pair
    assert not (a & b).any() and (a | b).sum() == peanut.sum()
    # each daughter is one of the two discs (the cut runs through the waist)
    for part in (a, b):
        best = max((part & d).sum() / (part | d).sum() for d in (left, right))
        assert best > 0.9
    # the same split along a slanted axis
    slanted = disc((22, 22), 7) | disc((32, 32), 7)
    assert decisions.shape_daughters(slanted, area, CFG) is not None


def test_shape_division_needs_an_elongated_mask_of_kept_area():
    peanut = disc((32, 25), 7) | disc((32, 39), 7)
    area = float(peanut.sum())
    # a round mask is no division
    assert decisions.shape_daughters(disc((32, 32), 10), area, CFG) is None
    # the mask doubled (it grew onto a neighbour) or halved: no division
    assert decisions.shape_daughters(peanut, area / 2, CFG) is None
    assert decisions.shape_daughters(peanut, area * 2, CFG) is None
    # a cell with a thin tail (a leak): elongated; cut through the centroid, its
    # halves are 219 and 120 pixels, sisters at a ratio of 0.5 but not of 0.6
    tailed = np.zeros((64, 96), bool)
    tailed[:, :64] = disc((32, 20), 9)
    tailed[31:34, 28:58] = True
    assert decisions.mask_aspect(tailed) > CFG.elongated_aspect
    area = float(tailed.sum())
    assert decisions.shape_daughters(tailed, area, replace(CFG, sister_ratio=0.6)) is None
    pair = decisions.shape_daughters(tailed, area, replace(CFG, sister_ratio=0.5))
    assert pair is not None and sorted(int(m.sum()) for m in pair) == [120, 219]
    # the thresholds are settings
    strict = replace(CFG, elongated_aspect=3.0)
    assert decisions.shape_daughters(peanut, area, strict) is None
    with pytest.raises(InputError, match="round_aspect"):
        TrackConfig(round_aspect=0.9)
    with pytest.raises(InputError, match="elongated_aspect"):
        TrackConfig(elongated_aspect="2")


def test_only_an_old_enough_track_showing_the_mitotic_cues_may_divide():
    # the rounding cue alone (dimming off)
    cfg = TrackConfig(division_min_age=8, round_aspect=1.3, dim_ratio=None, history=3)
    may = decisions.may_divide
    assert may(8, [1.05, 1.1, 1.2], [], np.nan, cfg)
    assert not may(7, [1.05, 1.1, 1.2], [], np.nan, cfg)  # too young
    assert not may(20, [1.6, 1.5, 1.4], [], np.nan, cfg)  # elongated: two cells, or a leak
    assert may(20, [float("nan"), 1.1], [], np.nan, cfg)  # NaN (no pixels) is skipped
    assert not may(20, [], [], np.nan, cfg) and not may(20, [np.nan], [], np.nan, cfg)
    assert not may(20, [1.0], [], np.nan, replace(cfg, divisions=False))
    assert may(20, [1.6], [], np.nan, replace(cfg, round_aspect=2.0))  # bar-shaped nuclei
    # the dimming cue alone (the default): the signal now against its recent mean
    cfg = TrackConfig(division_min_age=8, history=3)
    assert cfg.dim_ratio == 0.8 and cfg.round_aspect is None
    assert may(20, [2.0], [100.0, 90.0, 110.0], 60.0, cfg)  # halved: a division
    assert may(20, [2.0], [100.0], 80.0, cfg)  # at the ratio
    assert not may(20, [1.0], [100.0, 90.0, 110.0], 95.0, cfg)  # kept: a track falling apart
    assert not may(7, [1.0], [100.0], 50.0, cfg)  # too young
    assert may(20, [1.0], [np.nan, 100.0], 50.0, cfg)  # NaN skipped
    assert not may(20, [1.0], [], 50.0, cfg)  # no history
    assert not may(20, [1.0], [-5.0, -3.0], -10.0, cfg)  # no brighter than the background
    # both cues on: both must hold
    both = replace(cfg, round_aspect=1.3)
    assert may(20, [1.1], [100.0], 50.0, both)
    assert not may(20, [1.6], [100.0], 50.0, both) and not may(20, [1.1], [100.0], 95.0, both)
    with pytest.raises(InputError, match="dim_ratio"):
        TrackConfig(dim_ratio=1.5)


def test_signal_is_the_mean_above_the_frame_median():
    image = np.full((10, 10), 100, np.uint16)
    image[2:5, 2:5] = 160
    signal = decisions.signal_image(image)
    assert signal.dtype == np.float32 and signal[0, 0] == 0.0
    cell = signal > 0
    assert decisions.mask_signal(signal, cell) == pytest.approx(60.0)
    assert np.isnan(decisions.mask_signal(signal, np.zeros((10, 10), bool)))
    # channels are averaged
    rgb = np.stack([image, image * 0 + 100, image], axis=-1)
    assert decisions.mask_signal(decisions.signal_image(rgb), cell) == pytest.approx(40.0)


def test_cue_settings_name_the_fields_of_each_mitotic_cue():
    assert decisions.cue_settings() == {"dim_ratio": 0.8, "round_aspect": None}
    cfg = replace(TrackConfig(), **decisions.cue_settings("rounding"))
    assert cfg.dim_ratio is None and cfg.round_aspect == 1.3
    assert TrackConfig() == replace(cfg, **decisions.cue_settings("dimming"))
    with pytest.raises(InputError, match="^division_cue: .*dimming, rounding"):
        decisions.cue_settings("brightening")
