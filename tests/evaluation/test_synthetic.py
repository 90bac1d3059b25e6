"""Tests of napari_sam2.evaluation.synthetic: the seeded time-lapse and z-stack generators."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_sam2.errors import InputError
from napari_sam2.evaluation.synthetic import (
    SNR_PRESETS,
    DivisionConfig,
    ImagingConfig,
    MotionConfig,
    lineage_to_ctc_text,
    make_timelapse,
    make_zstack,
)

DIVIDING = DivisionConfig(rate=0.1, min_age=4)


@pytest.fixture(scope="module")
def movie():
    """Cells that divide, touch, enter and leave."""
    return make_timelapse(n_frames=40, shape=(128, 128), n_cells=10, seed=2, division=DIVIDING)


def _in_plane(structure_2d: np.ndarray) -> np.ndarray:
    """A 3D structuring element acting within each frame only."""
    out = np.zeros((3, 3, 3), dtype=bool)
    out[1] = structure_2d
    return out


def _measured_snr(image: np.ndarray, labels: np.ndarray) -> float:
    """CTC-style SNR: (mean inside cells - mean background) / background std."""
    cross = _in_plane(ndimage.generate_binary_structure(2, 1))
    inside = ndimage.binary_erosion(labels > 0, cross, iterations=2)
    background = ~ndimage.binary_dilation(labels > 0, cross, iterations=6)
    image = image.astype(float)
    return (image[inside].mean() - image[background].mean()) / image[background].std()


def _spans(labels: np.ndarray) -> dict[int, list[int]]:
    frames: dict[int, list[int]] = {}
    for t, frame in enumerate(labels):
        for label in np.unique(frame):
            if label:
                frames.setdefault(int(label), []).append(t)
    return frames


# --------------------------------------------------------------------------- basics


def test_shapes_and_dtypes():
    m = make_timelapse(n_frames=5, shape=(64, 80), n_cells=4, seed=0)
    assert m.image.shape == m.labels.shape == (5, 64, 80)
    assert m.image.dtype == np.uint16
    assert m.labels.dtype == np.int32
    assert m.labels.min() == 0
    assert m.lineage_array().shape == (len(m.lineage), 4)


def test_deterministic_per_seed():
    a = make_timelapse(n_frames=12, shape=(64, 64), n_cells=5, seed=7, division=DIVIDING)
    b = make_timelapse(n_frames=12, shape=(64, 64), n_cells=5, seed=7, division=DIVIDING)
    c = make_timelapse(n_frames=12, shape=(64, 64), n_cells=5, seed=8, division=DIVIDING)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.lineage == b.lineage
    assert not np.array_equal(a.labels, c.labels)


def test_snr_changes_the_image_not_the_ground_truth():
    low = make_timelapse(n_frames=3, shape=(64, 64), n_cells=4, snr=1, seed=5)
    high = make_timelapse(n_frames=3, shape=(64, 64), n_cells=4, snr=7, seed=5)
    np.testing.assert_array_equal(low.labels, high.labels)
    assert not np.array_equal(low.image, high.image)


def test_higher_snr_gives_higher_measured_snr():
    measured = [
        _measured_snr(m.image, m.labels)
        for m in (
            make_timelapse(n_frames=4, shape=(96, 96), n_cells=6, snr=s, seed=1)
            for s in SNR_PRESETS
        )
    ]
    assert measured == sorted(measured)
    assert len(set(measured)) == len(measured)
    # The nominal value is the contrast of a median cell, so it is roughly met.
    assert measured[-1] == pytest.approx(SNR_PRESETS[-1], rel=0.35)


def test_photobleaching_lowers_contrast_over_time():
    m = make_timelapse(
        n_frames=30, shape=(96, 96), n_cells=6, seed=1, imaging=ImagingConfig(bleach_rate=0.05)
    )
    early = _measured_snr(m.image[:3], m.labels[:3])
    late = _measured_snr(m.image[-3:], m.labels[-3:])
    assert late < 0.5 * early


# --------------------------------------------------------------------------- labels


def test_each_label_is_one_connected_blob(movie):
    for frame in movie.labels:
        for index, box in enumerate(ndimage.find_objects(frame)):
            if box is not None:
                _, n = ndimage.label(frame[box] == index + 1)
                assert n == 1


def test_crowded_cells_touch(movie):
    # Pixels of two different cells side by side: contacts are resolved into
    # shared borders rather than overlaps.
    frames = movie.labels
    left, right = frames[:, :, :-1], frames[:, :, 1:]
    touching = (left > 0) & (right > 0) & (left != right)
    assert touching.sum() > 0


def test_lineage_matches_the_label_volume(movie):
    spans = _spans(movie.labels)
    rows = {r.label: r for r in movie.lineage}
    assert set(rows) == set(spans)
    assert sorted(rows) == list(range(1, len(rows) + 1))
    for label, frames in spans.items():
        row = rows[label]
        assert (row.first, row.last) == (frames[0], frames[-1])
        assert frames == list(range(row.first, row.last + 1)), "a label with a gap"
    # Labels are numbered in order of first appearance.
    firsts = [rows[label].first for label in sorted(rows)]
    assert firsts == sorted(firsts)


def test_divisions_are_consistent(movie):
    rows = {r.label: r for r in movie.lineage}
    children: dict[int, list[int]] = {}
    for row in movie.lineage:
        if row.parent:
            children.setdefault(row.parent, []).append(row.label)
    assert children, "expected divisions"
    for mother, daughters in children.items():
        assert len(daughters) == 2
        assert mother not in daughters
        for d in daughters:
            assert rows[d].first == rows[mother].last + 1
        # The mother ends: it is not in the frame its daughters start in.
        assert not (movie.labels[rows[mother].last + 1] == mother).any()


def test_mothers_round_up_and_brighten_before_dividing():
    m = make_timelapse(n_frames=40, shape=(128, 128), n_cells=10, seed=2, snr=7, division=DIVIDING)
    rows = {r.label: r for r in m.lineage}
    brightness, area = [], []
    for mother in {r.parent for r in m.lineage if r.parent}:
        last = rows[mother].last
        if last - 4 < rows[mother].first:
            continue
        before, after = m.labels[last - 4] == mother, m.labels[last] == mother
        brightness.append(m.image[last][after].mean() / m.image[last - 4][before].mean())
        area.append(after.sum() / before.sum())
    assert len(brightness) >= 3
    assert np.mean(brightness) > 1.1
    assert np.mean(area) < 0.95


def test_cells_enter_and_leave(movie):
    mothers = {r.parent for r in movie.lineage}
    last_frame = len(movie.labels) - 1
    entered = [r for r in movie.lineage if r.first > 0 and r.parent == 0]
    left = [r for r in movie.lineage if r.last < last_frame and r.label not in mothers]
    assert entered and left
    for row in entered:  # a cell that enters shows up at the edge of the field
        frame = movie.labels[row.first] == row.label
        assert frame[0].any() or frame[-1].any() or frame[:, 0].any() or frame[:, -1].any()


def _max_step(labels: np.ndarray) -> float:
    """Largest frame-to-frame centroid step of a cell clear of the edges, in radii."""
    largest = 0.0
    for t in range(len(labels) - 1):
        for label in np.unique(labels[t])[1:]:
            a, b = labels[t] == label, labels[t + 1] == label
            if not b.any() or any(m[[0, -1]].any() or m[:, [0, -1]].any() for m in (a, b)):
                continue
            step = np.hypot(*np.subtract(ndimage.center_of_mass(a), ndimage.center_of_mass(b)))
            largest = max(largest, step / np.sqrt(a.sum() / np.pi))
    return largest


def test_jumps_move_cells_further_than_their_radius():
    kwargs = dict(n_frames=20, shape=(128, 128), n_cells=8, seed=4)
    calm = make_timelapse(**kwargs, motion=MotionConfig(jump_prob=0.0, entry_rate=0.0))
    jumpy = make_timelapse(**kwargs, motion=MotionConfig(jump_prob=0.3, entry_rate=0.0))
    assert _max_step(calm.labels) < 0.6
    assert _max_step(jumpy.labels) > 1.0


def test_lineage_text_and_file(movie, tmp_path):
    path = movie.write_lineage(tmp_path / "res_track.txt")
    lines = path.read_text().splitlines()
    assert len(lines) == len(movie.lineage)
    first = movie.lineage[0]
    assert lines[0] == f"{first.label} {first.first} {first.last} {first.parent}"
    assert lineage_to_ctc_text(movie.lineage) == path.read_text()


def test_timelapse_input_errors():
    with pytest.raises(InputError, match="shape"):
        make_timelapse(shape=(64,))
    with pytest.raises(InputError, match="shape"):
        make_timelapse(shape=(8, 64))
    with pytest.raises(InputError, match="snr"):
        make_timelapse(snr=0)
    with pytest.raises(InputError, match="n_frames"):
        make_timelapse(n_frames=0)
    with pytest.raises(InputError, match="division_rate"):
        make_timelapse(division_rate=1.5)


# --------------------------------------------------------------------------- z-stack


def test_zstack_shapes_objects_and_determinism():
    a = make_zstack(n_slices=16, shape=(64, 64), n_cells=6, seed=3)
    b = make_zstack(n_slices=16, shape=(64, 64), n_cells=6, seed=3)
    assert a.image.shape == a.labels.shape == (16, 64, 64)
    assert a.image.dtype == np.uint16
    assert a.labels.dtype == np.int32
    assert a.spacing == (2.0, 1.0, 1.0)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    n = int(a.labels.max())
    assert n >= 3
    assert sorted(int(x) for x in np.unique(a.labels)[1:]) == list(range(1, n + 1))
    for index, box in enumerate(ndimage.find_objects(a.labels)):
        _, pieces = ndimage.label(a.labels[box] == index + 1)
        assert pieces == 1  # one 3D object per label
        assert box[0].stop - box[0].start > 1  # spanning several slices


def test_zstack_axial_blur_is_wider_than_lateral():
    # A nearly noise-free view of the optics (very high SNR, even illumination), with
    # cubic voxels so that a step along z and along a row cover the same distance.
    imaging = ImagingConfig(illumination_falloff=0.0, depth_attenuation=0.0)
    z = make_zstack(
        n_slices=40, shape=(64, 64), n_cells=1, snr=2000, seed=0, z_scale=1.0, imaging=imaging
    )
    inside = z.labels > 0
    image = z.image.astype(float)
    # Intensity jump across the object edge along z versus along columns.
    dz = np.abs(np.diff(image, axis=0))[np.diff(inside, axis=0)].mean()
    dx = np.abs(np.diff(image, axis=2))[np.diff(inside, axis=2)].mean()
    assert dz < dx


def test_zstack_input_errors():
    with pytest.raises(InputError, match="z_scale"):
        make_zstack(z_scale=-1)
    with pytest.raises(InputError, match="n_slices"):
        make_zstack(n_slices=0)
