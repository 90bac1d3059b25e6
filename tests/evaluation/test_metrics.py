"""Tests of napari_sam2.evaluation.metrics: DAVIS J&F, next_click, CTC export and CTC metrics."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from napari_sam2.errors import InputError
from napari_sam2.evaluation.metrics import (
    boundary_f,
    boundary_tolerance,
    ctc_scores,
    ctc_tracks,
    jaccard,
    jf_scores,
    next_click,
    seg2bmap,
    write_ctc,
)
from napari_sam2.evaluation.synthetic import DivisionConfig, LineageRow, make_timelapse

# Only the CTC tests need py-ctcmetrics; J&F and clicks are tested without it.
needs_ctc = pytest.mark.skipif(
    importlib.util.find_spec("ctc_metrics") is None, reason="py-ctcmetrics is not installed"
)


def _rect(shape, rows, cols) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


# --------------------------------------------------------------------------- references


def _seg2bmap_loops(seg: np.ndarray) -> np.ndarray:
    """The DAVIS boundary rule written out pixel by pixel, as an independent check."""
    h, w = seg.shape

    def at(i, j):
        return bool(seg[i, j]) if i < h and j < w else False

    out = np.zeros((h, w), dtype=bool)
    for i in range(h):
        for j in range(w):
            if i == h - 1 and j == w - 1:
                continue
            if i == h - 1:
                out[i, j] = at(i, j) != at(i, j + 1)
            elif j == w - 1:
                out[i, j] = at(i, j) != at(i + 1, j)
            else:
                here = at(i, j)
                out[i, j] = here != at(i, j + 1) or here != at(i + 1, j) or here != at(i + 1, j + 1)
    return out


def _boundary_f_dilation(pred: np.ndarray, gt: np.ndarray, radius: int) -> float:
    """DAVIS F with a disk dilation (the original formulation) instead of distances."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = yy**2 + xx**2 <= radius**2
    pb, gb = _seg2bmap_loops(pred), _seg2bmap_loops(gt)
    n_p, n_g = pb.sum(), gb.sum()
    if n_p == 0 and n_g == 0:
        p = r = 1.0
    elif n_p == 0:
        p, r = 1.0, 0.0
    elif n_g == 0:
        p, r = 0.0, 1.0
    else:
        p = (pb & ndimage.binary_dilation(gb, disk)).sum() / n_p
        r = (gb & ndimage.binary_dilation(pb, disk)).sum() / n_g
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _random_blobs(rng, shape, n) -> np.ndarray:
    """A label image of ``n`` random, possibly touching, blobs."""
    seeds = np.zeros(shape, dtype=np.int32)
    for label in range(1, n + 1):
        seeds[tuple(rng.integers(0, s) for s in shape)] = label
    dist, (ri, ci) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    labels = seeds[ri, ci]
    labels[dist > rng.uniform(3, 8)] = 0
    return labels


# --------------------------------------------------------------------------- seg2bmap


def test_seg2bmap_hand_computed_square():
    seg = _rect((4, 4), (1, 3), (1, 3))
    expected = np.array(
        [
            [1, 1, 1, 0],
            [1, 0, 1, 0],
            [1, 1, 1, 0],
            [0, 0, 0, 0],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(seg2bmap(seg), expected)


def test_seg2bmap_ignores_the_image_border():
    assert not seg2bmap(np.ones((6, 7), dtype=bool)).any()
    left_half = _rect((6, 8), (0, 6), (0, 4))
    expected = np.zeros((6, 8), dtype=bool)
    expected[:, 3] = True  # last object column: its east neighbour is background
    expected[-1, 3] = True  # bottom row compares with the east neighbour only
    np.testing.assert_array_equal(seg2bmap(left_half), expected)


def test_seg2bmap_matches_the_rule_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(5):
        seg = rng.random((13, 17)) < 0.4
        np.testing.assert_array_equal(seg2bmap(seg), _seg2bmap_loops(seg))


# --------------------------------------------------------------------------- J and F


def test_jaccard_hand_computed():
    gt = _rect((6, 6), (1, 3), (1, 5))  # 8 pixels
    pred = _rect((6, 6), (1, 3), (1, 3))  # 4 of them
    assert jaccard(pred, gt) == pytest.approx(0.5)
    assert jaccard(gt, gt) == 1.0


def test_boundary_f_hand_computed_shift():
    gt = _rect((6, 6), (1, 3), (1, 3))
    pred = _rect((6, 6), (1, 3), (2, 4))
    # Both boundaries have 8 pixels and share 4 of them.
    assert boundary_f(pred, gt, bound_pixels=0) == pytest.approx(0.5)
    # One pixel of tolerance matches every boundary pixel.
    assert boundary_f(pred, gt, bound_pixels=1) == pytest.approx(1.0)


def test_boundary_f_hand_computed_extra_region():
    gt = _rect((12, 12), (1, 3), (1, 3))
    pred = gt | _rect((12, 12), (8, 10), (8, 10))
    # Precision 8/16, recall 1: F = 2 * 0.5 / 1.5.
    assert boundary_f(pred, gt, bound_pixels=1) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("pred_on", "gt_on", "j", "f"),
    [
        (False, False, 1.0, 1.0),  # both empty
        (False, True, 0.0, 0.0),  # prediction empty: P = 1, R = 0
        (True, False, 0.0, 0.0),  # ground truth empty: P = 0, R = 1
        (True, True, 1.0, 1.0),  # both present and equal
    ],
)
def test_empty_and_nonempty_combinations(pred_on, gt_on, j, f):
    square = _rect((10, 10), (3, 6), (3, 6))
    empty = np.zeros((10, 10), dtype=bool)
    pred = square if pred_on else empty
    gt = square if gt_on else empty
    assert jaccard(pred, gt) == j
    assert boundary_f(pred, gt) == f


def test_disjoint_masks_score_zero():
    gt = _rect((30, 30), (2, 6), (2, 6))
    pred = _rect((30, 30), (20, 26), (20, 26))
    assert jaccard(pred, gt) == 0.0
    assert boundary_f(pred, gt, bound_pixels=2) == 0.0


def test_objects_touching_the_border():
    full = np.ones((20, 20), dtype=bool)
    left = _rect((20, 20), (0, 20), (0, 10))
    # The whole image has no boundary at all: both empty -> F = 1.
    assert boundary_f(full, full) == 1.0
    # Ground truth without boundary against a prediction with one: P = 0, R = 1.
    assert boundary_f(left, full) == 0.0
    assert jaccard(left, full) == pytest.approx(0.5)
    # A border-touching object matched against itself shifted along the border.
    corner = _rect((20, 20), (0, 5), (0, 5))
    assert boundary_f(corner, corner, bound_pixels=0) == 1.0
    moved = _rect((20, 20), (0, 5), (0, 6))
    assert boundary_f(moved, corner, bound_pixels=1) == 1.0
    assert boundary_f(moved, corner, bound_pixels=0) < 1.0


@pytest.mark.parametrize(
    ("shape", "expected"), [((480, 854), 8), ((1024, 1024), 12), ((2048, 2048), 24)]
)
def test_boundary_tolerance_formula(shape, expected):
    assert boundary_tolerance(shape) == expected


@pytest.mark.parametrize(("shape", "tol"), [((480, 854), 8), ((1024, 1024), 12)])
def test_default_tolerance_is_applied(shape, tol):
    gt = _rect(shape, (100, 200), (200, 400))
    within = _rect(shape, (100 + tol, 200 + tol), (200, 400))
    beyond = _rect(shape, (101 + tol, 201 + tol), (200, 400))
    assert boundary_f(within, gt) == 1.0
    assert boundary_f(beyond, gt) < 1.0
    # jf_scores (which crops around the objects) must agree.
    labels = gt[None].astype(np.int32)
    assert jf_scores(within[None].astype(np.int32), labels).F_mean == 1.0
    assert jf_scores(beyond[None].astype(np.int32), labels).F_mean < 1.0


def test_boundary_f_agrees_with_disk_dilation():
    rng = np.random.default_rng(1)
    for radius in (0, 1, 2, 4):
        for _ in range(4):
            gt = _random_blobs(rng, (24, 30), 2) > 0
            pred = ndimage.binary_dilation(gt, iterations=int(rng.integers(0, 3)))
            pred = pred ^ (rng.random(gt.shape) < 0.05)
            expected = _boundary_f_dilation(pred, gt, radius)
            assert boundary_f(pred, gt, bound_pixels=radius) == pytest.approx(expected)


def test_mask_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError, match="pred_mask"):
        boundary_f(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(InputError, match="mask"):
        seg2bmap(np.zeros((2, 3, 4)))


# --------------------------------------------------------------------------- jf_scores


def test_jf_scores_equal_per_frame_scores_on_full_frames():
    rng = np.random.default_rng(2)
    gt = np.stack([_random_blobs(rng, (40, 50), 4) for _ in range(3)])
    pred = np.stack([ndimage.grey_dilation(f, size=3) for f in gt])
    pred[1][pred[1] == 2] = 0
    pred[2][:5] = 7  # an extra predicted label, ignored
    result = jf_scores(pred, gt, bound_pixels=2)
    assert result.objects == tuple(int(x) for x in np.unique(gt) if x)
    for row, obj in enumerate(result.objects):
        for t in range(3):
            p, g = pred[t] == obj, gt[t] == obj
            assert result.J_frames[row, t] == pytest.approx(jaccard(p, g))
            assert result.F_frames[row, t] == pytest.approx(boundary_f(p, g, bound_pixels=2))
    assert result.J_mean == pytest.approx(result.J_frames.mean())
    assert result.JF_mean == pytest.approx((result.J_mean + result.F_mean) / 2)


def test_jf_scores_averages_frames_then_objects():
    gt = np.zeros((4, 20, 20), dtype=np.int32)
    gt[:, 2:8, 2:8] = 1  # object 1 in every frame
    gt[:2, 12:18, 12:18] = 2  # object 2 only in frames 0 and 1
    pred = gt.copy()
    pred[2:, 2:8, 2:8] = 0  # object 1 lost in frames 2 and 3
    result = jf_scores(pred, gt)
    assert result.J == {1: 0.5, 2: 1.0}  # object 2 is absent from both later: J = 1
    assert result.F == {1: 0.5, 2: 1.0}
    assert result.JF[1] == 0.5
    assert result.J_mean == pytest.approx(0.75)
    assert result.JF_mean == pytest.approx(0.75)
    assert result.as_dict()["JF_mean"] == pytest.approx(0.75)


def test_jf_scores_skip_first_last():
    gt = np.zeros((4, 20, 20), dtype=np.int32)
    gt[:, 2:8, 2:8] = 1
    pred = gt.copy()
    pred[0] = 0
    pred[3] = 0
    assert jf_scores(pred, gt).J_mean == pytest.approx(0.5)
    skipped = jf_scores(pred, gt, skip_first_last=True)
    assert skipped.frames == (1, 2)
    assert skipped.J_mean == 1.0
    assert skipped.F_mean == 1.0


def test_jf_scores_single_frame_2d_input():
    gt = _rect((20, 20), (2, 8), (2, 8)).astype(np.uint8)
    pred = _rect((20, 20), (2, 8), (2, 5)).astype(np.uint8)
    result = jf_scores(pred, gt)
    assert result.J[1] == pytest.approx(0.5)
    assert result.frames == (0,)


def test_jf_scores_input_errors():
    gt = np.zeros((3, 10, 10), dtype=np.int32)
    gt[:, 2:5, 2:5] = 1
    with pytest.raises(InputError, match="pred_labels.*shape"):
        jf_scores(gt[:, :9], gt)
    with pytest.raises(InputError, match="gt_labels: contains no objects"):
        jf_scores(gt, np.zeros_like(gt))
    with pytest.raises(InputError, match="skip_first_last"):
        jf_scores(gt[:2], gt[:2], skip_first_last=True)
    with pytest.raises(InputError, match="pred_labels.*integer"):
        jf_scores(gt.astype(float), gt)
    with pytest.raises(InputError, match="gt_labels.*>= 0"):
        jf_scores(gt, -gt)
    with pytest.raises(InputError, match="bound_pixels"):
        jf_scores(gt, gt, bound_pixels=-1)


# --------------------------------------------------------------------------- next_click


def _disk(shape, center, radius) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def test_next_click_first_click_is_the_object_centre():
    gt = _disk((50, 60), (20, 30), 6)
    assert next_click(np.zeros_like(gt), gt) == (20, 30, 1)


def test_next_click_negative_in_the_deeper_false_positive():
    gt = _disk((50, 60), (35, 15), 4)
    pred = gt | _disk((50, 60), (12, 40), 8)
    assert next_click(pred, gt) == (12, 40, 0)


def test_next_click_positive_when_the_miss_is_deeper():
    gt = _rect((40, 40), (5, 35), (5, 35))
    pred = gt.copy()
    pred[20:31, 20:31] = False  # a deep miss, 11x11
    pred[1:3, 1:3] = True  # a thin false positive
    row, col, label = next_click(pred, gt)
    assert label == 1
    assert (row, col) == (25, 25)


def test_next_click_measures_depth_to_the_image_edge():
    gt = _rect((30, 40), (0, 10), (0, 40))
    # The image edge counts as a border, so the 10-row strip is 5 deep at rows 4
    # and 5 from column 4 on; the first such pixel wins. Without the edge counting,
    # the deepest point would be on row 0, farthest from row 10.
    assert next_click(np.zeros_like(gt), gt) == (4, 4, 1)


def test_next_click_equal_depth_goes_negative():
    gt = _rect((10, 20), (2, 7), (2, 7))
    pred = _rect((10, 20), (2, 7), (12, 17))
    assert next_click(pred, gt) == (4, 14, 0)


def test_next_click_no_error_and_bad_input():
    gt = _disk((20, 20), (10, 10), 4)
    assert next_click(gt, gt) is None
    with pytest.raises(InputError, match="pred_mask"):
        next_click(gt[:10], gt)
    with pytest.raises(InputError, match="gt_mask"):
        next_click(gt, gt[None])


# --------------------------------------------------------------------------- CTC export


def _validate(folder) -> int:
    from ctc_metrics import validate_sequence

    return validate_sequence(str(folder), threads=1)["Valid"]


def _read_tracks(path) -> list[list[int]]:
    return [[int(v) for v in line.split()] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def movie():
    """A small synthetic movie with divisions, cells entering and leaving."""
    division = DivisionConfig(rate=0.08, min_age=4)
    return make_timelapse(n_frames=24, shape=(96, 96), n_cells=7, seed=0, division=division)


@needs_ctc
def test_write_ctc_synthetic_movie_is_valid(movie, tmp_path):
    assert any(r.parent for r in movie.lineage)
    tracks = write_ctc(movie.labels, tmp_path, movie.lineage)
    assert _validate(tmp_path) == 1
    expected = [[r.label, r.first, r.last, r.parent] for r in movie.lineage]
    assert _read_tracks(tmp_path / "res_track.txt") == expected
    np.testing.assert_array_equal(tracks, expected)
    assert sorted(p.name for p in tmp_path.glob("mask*.tif"))[:2] == ["mask000.tif", "mask001.tif"]
    frame = tifffile.imread(tmp_path / "mask005.tif")
    assert frame.dtype == np.uint16
    np.testing.assert_array_equal(frame, movie.labels[5])


@needs_ctc
def test_write_ctc_splits_a_label_that_reappears(tmp_path):
    labels = np.zeros((5, 8, 8), dtype=np.int32)
    labels[[0, 1, 3, 4], 1:3, 1:3] = 3
    labels[:, 5:7, 5:7] = 5
    tracks = write_ctc(labels, tmp_path)
    assert tracks.tolist() == [[3, 0, 1, 0], [5, 0, 4, 0], [6, 3, 4, 3]]
    assert _validate(tmp_path) == 1
    assert set(np.unique(tifffile.imread(tmp_path / "mask003.tif"))) == {0, 5, 6}
    assert set(np.unique(tifffile.imread(tmp_path / "mask001.tif"))) == {0, 3, 5}
    # The input is left untouched.
    assert (labels[3] == 3).any()


@needs_ctc
def test_ctc_tracks_children_of_a_split_label_link_to_its_last_piece(tmp_path):
    labels = np.zeros((6, 10, 10), dtype=np.int32)
    labels[[0, 1, 3], 2:6, 2:6] = 3
    labels[4:, 2:4, 2:4] = 7
    labels[4:, 5:7, 5:7] = 8
    lineage = [LineageRow(3, 0, 3, 0), LineageRow(7, 4, 5, 3), LineageRow(8, 4, 5, 3)]
    out, tracks = ctc_tracks(labels, lineage)
    assert tracks.tolist() == [[3, 0, 1, 0], [7, 4, 5, 9], [8, 4, 5, 9], [9, 3, 3, 3]]
    assert (out[3] == 9).sum() == 16
    write_ctc(labels, tmp_path, np.array([[3, 0, 3, 0], [7, 4, 5, 3], [8, 4, 5, 3]]))
    assert _validate(tmp_path) == 1


def test_write_ctc_ground_truth_layout_and_four_digits(tmp_path):
    labels = np.zeros((1001, 4, 4), dtype=np.uint16)
    labels[:, 1, 1] = 1
    write_ctc(labels, tmp_path, ground_truth=True)
    assert (tmp_path / "TRA" / "man_track0000.tif").exists()
    assert (tmp_path / "TRA" / "man_track1000.tif").exists()
    assert (tmp_path / "SEG" / "man_seg1000.tif").exists()
    assert _read_tracks(tmp_path / "TRA" / "man_track.txt") == [[1, 0, 1000, 0]]


@needs_ctc
def test_write_ctc_refuses_stale_files_unless_overwriting(tmp_path):
    labels = np.zeros((5, 6, 6), dtype=np.int32)
    labels[:, 1:3, 1:3] = 1
    write_ctc(labels, tmp_path)
    with pytest.raises(InputError, match="folder"):
        write_ctc(labels[:3], tmp_path)
    write_ctc(labels[:3], tmp_path, overwrite=True)
    assert len(list(tmp_path.glob("mask*.tif"))) == 3
    assert _validate(tmp_path) == 1


def test_write_ctc_lineage_errors(tmp_path):
    labels = np.zeros((4, 6, 6), dtype=np.int32)
    labels[:2, 1:3, 1:3] = 1
    labels[2:, 1:3, 1:3] = 2
    with pytest.raises(InputError, match="label 2 is in labels but has no lineage row"):
        write_ctc(labels, tmp_path / "a", [(1, 0, 1, 0)])
    with pytest.raises(InputError, match="label 1 spans frames 0-2"):
        write_ctc(labels, tmp_path / "b", [(1, 0, 2, 0), (2, 2, 3, 1)])
    with pytest.raises(InputError, match="parent 2 of label 1"):
        write_ctc(labels, tmp_path / "c", [(1, 0, 1, 2), (2, 2, 3, 0)])
    with pytest.raises(InputError, match="label 9 has no pixels"):
        write_ctc(labels, tmp_path / "d", [(1, 0, 1, 0), (2, 2, 3, 1), (9, 0, 0, 0)])
    with pytest.raises(InputError, match="lineage"):
        write_ctc(labels, tmp_path / "e", [(1, 0, 1), (2, 2, 3)])


def test_write_ctc_label_errors(tmp_path):
    with pytest.raises(InputError, match="labels.*dimensions"):
        write_ctc(np.zeros((4, 4), dtype=np.int32), tmp_path)
    big = np.zeros((2, 4, 4), dtype=np.int64)
    big[:, 0, 0] = 70000
    with pytest.raises(InputError, match="16-bit"):
        write_ctc(big, tmp_path)


# --------------------------------------------------------------------------- CTC metrics


@needs_ctc
def test_ctc_scores_ground_truth_against_itself(movie):
    scores = ctc_scores(movie.labels, movie.labels, movie.lineage, movie.lineage)
    assert scores["SEG"] == 1.0
    assert scores["DET"] == 1.0
    assert scores["TRA"] == 1.0
    assert scores["AOGM"] == 0


@needs_ctc
def test_ctc_scores_drop_for_a_shifted_prediction(movie):
    small = np.roll(movie.labels, 2, axis=2)
    scores = ctc_scores(small, movie.labels, movie.lineage, movie.lineage)
    assert scores["SEG"] < 0.95
    large = np.roll(movie.labels, 12, axis=2)
    scores = ctc_scores(large, movie.labels, movie.lineage, movie.lineage)
    assert scores["DET"] < 0.9
    assert scores["TRA"] < 0.9


def _longest_lived(movie, n):
    rows = sorted(movie.lineage, key=lambda r: r.first - r.last)
    return [r.label for r in rows[:n]]


@needs_ctc
def test_ctc_scores_drop_for_a_split_prediction(movie):
    (label,) = _longest_lived(movie, 1)
    pred = movie.labels.copy()
    new = int(pred.max()) + 1
    for t in range(len(pred)):
        rows, cols = np.nonzero(pred[t] == label)
        if len(cols):
            half = cols > np.median(cols)
            pred[t][rows[half], cols[half]] = new
    scores = ctc_scores(pred, movie.labels, gt_lineage=movie.lineage)
    assert scores["SEG"] < 1.0
    assert scores["DET"] < 1.0
    assert scores["TRA"] < 1.0


@needs_ctc
def test_ctc_scores_drop_for_a_merged_prediction(movie):
    first, second = _longest_lived(movie, 2)
    pred = movie.labels.copy()
    pred[pred == second] = first
    scores = ctc_scores(pred, movie.labels, gt_lineage=movie.lineage)
    assert scores["SEG"] < 1.0
    assert scores["DET"] < 1.0
    assert scores["TRA"] < 1.0


@needs_ctc
def test_ctc_scores_empty_prediction_and_errors(movie):
    scores = ctc_scores(np.zeros_like(movie.labels), movie.labels)
    assert scores["SEG"] == scores["DET"] == scores["TRA"] == 0.0
    with pytest.raises(InputError, match="gt_labels: contains no objects"):
        ctc_scores(movie.labels, np.zeros_like(movie.labels))
    with pytest.raises(InputError, match="pred_labels.*shape"):
        ctc_scores(movie.labels[:, :50], movie.labels)
