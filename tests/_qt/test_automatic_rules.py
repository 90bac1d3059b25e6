"""The decisions of the widget's automatic mode, on plain arrays (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2._qt.automatic_rules import (
    background_write,
    check_ids_fit,
    id_offset,
    new_cells,
    shift_ids,
    shifted_lineage,
    tracks_layer_data,
)
from napari_sam2.errors import InputError
from napari_sam2.tracking.decisions import TrackConfig
from napari_sam2.tracking.mask_generator import GeneratedMasks


def _found(masks, iou) -> GeneratedMasks:
    n = len(masks)
    return GeneratedMasks(
        np.asarray(masks, bool), np.asarray(iou, np.float32), np.ones(n, np.float32),
        np.zeros((n, 4), np.int64), np.zeros((n, 2), np.float32), np.zeros((n, 4), np.int64),
    )  # fmt: skip


def test_ids_go_above_every_label_and_object():
    assert id_offset(0) == 0
    assert id_offset(9, [3, 12]) == 12
    assert id_offset(40, [3]) == 40
    frame = np.array([[0, 1], [2, 0]], np.int32)
    assert shift_ids(frame, 40).tolist() == [[0, 41], [42, 0]]


def test_ids_that_do_not_fit_the_layer_dtype_are_refused():
    check_ids_fit(255, np.uint8)
    with pytest.raises(InputError, match="labels: id 256 does not fit .* uint8"):
        check_ids_fit(256, np.uint8)
    check_ids_fit(2**31 - 1, np.int32)


def test_only_background_pixels_are_written():
    current = np.array([[9, 9, 0], [0, 41, 0]], np.int32)
    predicted = np.array([[42, 0, 42], [43, 43, 43]], np.int64)
    where, values = background_write(current, predicted, axis=0, frame=3)
    volume = np.zeros((5, 2, 3), np.int32)
    volume[3] = current
    volume[where] = values
    # 9 (painted) and 41 (an earlier run's id) stay; the background takes the prediction.
    assert volume[3].tolist() == [[9, 9, 42], [43, 41, 43]]
    assert not volume[[0, 1, 2, 4]].any()
    assert background_write(current, np.zeros_like(predicted), 0, 3) is None
    # The stack axis need not be first.
    where, _ = background_write(current, predicted, axis=1, frame=2)
    assert set(where[1].tolist()) == {2}


def test_new_cells_best_first_never_over_labels():
    yy, xx = np.mgrid[:32, :32]
    a = (yy - 8) ** 2 + (xx - 8) ** 2 <= 25
    b = (yy - 8) ** 2 + (xx - 11) ** 2 <= 25  # overlaps a heavily
    c = (yy - 24) ** 2 + (xx - 24) ** 2 <= 25  # painted already
    current = np.where(c, 9, 0).astype(np.int32)
    cfg = TrackConfig(min_area=5)
    # b scores higher: it is taken, a then overlaps it too much.
    cells = new_cells(_found([a, b, c], [0.8, 0.9, 0.95]), current, cfg)
    assert len(cells) == 1 and np.array_equal(cells[0], b)
    assert new_cells(_found(np.zeros((0, 32, 32)), []), current, cfg) == []


def test_tracks_layer_data_shifts_ids_and_keeps_the_division_graph():
    labels = np.zeros((3, 16, 16), np.int32)
    labels[0, 2:6, 2:6] = 1  # the mother on frame 0
    labels[1:, 2:6, 2:4] = 2  # two daughters from frame 1
    labels[1:, 10:14, 10:14] = 3
    lineage = {1: (0, 0, 0), 2: (1, 2, 1), 3: (1, 2, 1)}
    data, graph = tracks_layer_data(labels, lineage, 40)
    assert graph == {42: [41], 43: [41]}
    assert sorted(set(data[:, 0].tolist())) == [41, 42, 43]
    row = data[(data[:, 0] == 43) & (data[:, 1] == 2)][0]
    assert row[2:].tolist() == [11.5, 11.5]  # centroid (row, col)
    assert shifted_lineage(lineage, 40) == {41: (0, 0, 0), 42: (1, 2, 41), 43: (1, 2, 41)}
