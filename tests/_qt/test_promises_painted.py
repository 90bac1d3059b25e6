"""Promise: pixels you painted are never overwritten (issue 15, case 8).

The rule: pixels that hold an object's id before napari-sam2 first writes
that object are the user's. Predictions add to them and write around them,
but never erase or overwrite them (deleting the object, an explicit action,
still removes all its pixels).
"""

# ruff: noqa: F811  (pytest fixtures imported from test_widget are parameters here)
from __future__ import annotations

import numpy as np
import pytest
from test_widget import N_FRAMES, SHAPE, _skip, checkpoint, errors, make_widget  # noqa: F401


def test_kept_pixels_are_never_written():
    from napari_sam2._qt.controller import Sam2Controller, merge_labels, painted_pixels

    current = np.array([[9, 9, 0], [0, 2, 2]], np.int32)
    predicted = np.array([[0, 1, 1], [9, 9, 0]], np.int32)
    keep = current == 9
    merged = merge_labels(current, predicted, {9, 2, 1}, keep)
    assert merged.tolist() == [[9, 9, 1], [9, 9, 0]]
    ctrl = Sam2Controller()
    volume = np.zeros((3, 2, 3), np.int32)
    volume[1] = current
    ctrl.painted[9] = painted_pixels(volume, 9, 0)
    assert sorted(ctrl.painted[9]) == [1] and ctrl.kept_pixels(0) is None
    np.testing.assert_array_equal(ctrl.kept_pixels(1), keep)
    ctrl.forget_object(9)
    assert ctrl.kept_pixels(1) is None


@pytest.mark.skipif(_skip is not None, reason=_skip or "")
def test_painted_pixels_survive_when_their_id_becomes_tracked(make_widget):
    viewer, widget = make_widget()
    painted = np.zeros((N_FRAMES, *SHAPE), bool)
    painted[0:2, 8:20, 8:20] = True  # 288 pixels of label 9 on frames 0-1
    widget.labels.data[painted] = 9
    widget.labels.refresh()
    widget.add_point(4, 40, 40, obj_id=9)  # the painted id is clicked on frame 4
    widget.propagate("both")
    labels = np.asarray(widget.labels.data)
    assert np.all(labels[painted] == 9), f"{int(np.sum(labels[painted] != 9))} painted px lost"
    assert np.any(labels[2:] == 9)  # and it was tracked
