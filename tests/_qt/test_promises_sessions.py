"""Promise: a session load or save never destroys the user's work (issue 15, cases 2-4).

Loading is all or nothing: every file and field of a session folder is checked
before the viewer is touched, so a damaged session leaves the hand-painted,
unsaved labels, the prompts and the session folder exactly as they were.
Saving writes only into a new, empty, or napari-sam2 session folder.

The widget tests use a real napari viewer (see test_widget.py, whose fixtures
are shared here); no model is loaded, which keeps them quick.
"""

# ruff: noqa: F811  (pytest fixtures imported from test_widget are parameters here)
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

# Widget fixtures (viewer with the sample, Xvfb, notifications) live in test_widget.
from test_widget import N_FRAMES, SHAPE, _skip, checkpoint, errors, make_widget  # noqa: F401

from napari_sam2.errors import InputError
from napari_sam2.files.prompt_files import PointRow, Prompts, write_prompts
from napari_sam2.files.saved_session import read_session
from napari_sam2.files.session_files import free_folder
from napari_sam2.files.tiff import write_label_tiff

needs_viewer = pytest.mark.skipif(_skip is not None, reason=_skip or "")

GOOD_META = {
    "format": "napari-sam2 session",
    "version": 1,
    "session_id": "abc",
    "image": {"layer": "cells (time-lapse)", "path": None, "shape": [N_FRAMES, *SHAPE]},
    "model": {"source": None, "device": "cpu", "precision": "float32", "image_size": 256},
    "stack_axis": 0,
    "stack_kind": "time",
    "objects": [{"id": 1, "name": "object 1"}, {"id": 2, "name": "object 2"}],
    "reached": {"1": [[0, 0], [1, 0]]},
    "selected_label": 1,
}

# Each damage a hand-edited or half-written session.json may carry.
BAD_FIELDS = {
    "object id not an integer": ("objects", [{"id": "one", "name": "x"}]),
    "object id zero": ("objects", [{"id": 0, "name": "x"}]),
    "objects not a list": ("objects", "1,2"),
    "selected_label garbage": ("selected_label", "garbage"),
    "stack_axis garbage": ("stack_axis", "q"),
    "stack_axis out of range": ("stack_axis", 7),
    "reached garbage": ("reached", {"1": [[0, "sideways", 3]]}),
    "reached key garbage": ("reached", {"x": [[0, 0]]}),
    "precision garbage": ("model", {"precision": "float8"}),
    "stack_kind garbage": ("stack_kind", "w"),
}


def _session_folder(root: Path, meta=GOOD_META, masks_shape=None) -> Path:
    folder = root / "session"
    folder.mkdir()
    (folder / "session.json").write_text(json.dumps(meta))
    labels = np.zeros((N_FRAMES, *SHAPE), np.int32)
    labels[0, 5:10, 5:10] = 1
    write_label_tiff(folder / "labels.tif", labels)
    masks = None if masks_shape is None else np.zeros(masks_shape, np.int32)
    if masks is not None:
        masks[0, :3, :3] = 2
    write_prompts(folder, Prompts((PointRow(0, 7, 7, 1, 1),), (), masks))
    return folder


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# --------------------------------------------------------------------------- Qt-free


def test_a_good_session_reads_whole(tmp_path):
    saved = read_session(_session_folder(tmp_path))
    assert saved.objects == {1: "object 1", 2: "object 2"}
    assert saved.reached == {1: {0: False, 1: False}}
    assert saved.labels.shape == (N_FRAMES, *SHAPE) and saved.labels.dtype == np.int32
    assert saved.model.image_size == 256 and saved.selected_label == 1


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
def test_a_damaged_session_json_is_one_error_naming_the_field(tmp_path, case):
    key, value = BAD_FIELDS[case]
    folder = _session_folder(tmp_path, {**GOOD_META, key: value})
    with pytest.raises(InputError) as info:
        read_session(folder)
    message = str(info.value)
    assert "\n" not in message and key in message and "session.json" in message


def test_mask_prompts_of_another_frame_size_are_refused_on_reading(tmp_path):
    folder = _session_folder(tmp_path, masks_shape=(N_FRAMES, 20, 30))
    with pytest.raises(InputError, match="mask prompts have shape"):
        read_session(folder)


def test_autosave_never_picks_a_folder_of_user_files(tmp_path):
    folder = tmp_path / "cells_sam2_session"
    folder.mkdir()
    (folder / "labels.tif").write_bytes(b"the user's own labels")
    assert free_folder(folder, "me") == tmp_path / "cells_sam2_session_2"
    empty = tmp_path / "empty_sam2_session"
    empty.mkdir()
    assert free_folder(empty, "me") == empty


# --------------------------------------------------------------------------- in the widget


def _paint(widget) -> np.ndarray:
    """Unsaved hand-painted labels and a click: the work a failed load must not touch."""
    widget.labels.data[1, 10:20, 10:30] = 7
    widget.labels.refresh()
    widget.add_point(2, 30, 30, obj_id=3, wait=False)
    return np.array(widget.labels.data)


def _unchanged(viewer, widget, labels, layer_names, folder_before) -> None:
    np.testing.assert_array_equal(widget.labels.data, labels)
    assert len(widget.points.data) == 1 and int(widget.points.features["object"][0]) == 3
    assert [layer.name for layer in viewer.layers] == layer_names
    assert widget.controller.session_folder == folder_before


@needs_viewer
@pytest.mark.parametrize(
    "case",
    [
        "object id not an integer",
        "selected_label garbage",
        "stack_axis garbage",
        "reached garbage",
    ],  # fmt: skip
)
def test_failed_session_load_keeps_unsaved_painted_labels(make_widget, tmp_path, case):
    viewer, widget = make_widget(load=False)
    labels = _paint(widget)
    names = [layer.name for layer in viewer.layers]
    key, value = BAD_FIELDS[case]
    folder = _session_folder(tmp_path, {**GOOD_META, key: value})
    with pytest.raises(InputError, match=key):
        widget.load_session(folder)
    _unchanged(viewer, widget, labels, names, None)


@needs_viewer
def test_session_with_wrong_size_mask_prompts_is_refused_whole(make_widget, tmp_path, errors):
    viewer, widget = make_widget(load=False)
    labels = _paint(widget)
    names = [layer.name for layer in viewer.layers]
    folder = _session_folder(tmp_path, masks_shape=(N_FRAMES, 20, 30))
    widget._guard(widget.load_session, folder)  # what the Load button does
    assert len(errors) == 1 and "mask prompts have shape" in errors[0]
    _unchanged(viewer, widget, labels, names, None)
    # The widget still works: saving snapshots the prompts (where the bad masks crashed).
    saved = widget.save_session(tmp_path / "after")
    assert (saved / "session.json").is_file()


@needs_viewer
def test_save_never_writes_into_a_folder_of_user_files(make_widget, tmp_path):
    viewer, widget = make_widget(load=False)
    labels = _paint(widget)
    mine = tmp_path / "my analysis"
    mine.mkdir()
    tifffile.imwrite(mine / "labels.tif", np.full((2, 8, 8), 5, np.uint8))
    (mine / "points.csv").write_text("frame,row,col,label,object\n0,1,1,1,5\n")
    before = _digests(mine)
    with pytest.raises(InputError, match="not a napari-sam2 session"):
        widget.save_session(mine)
    # A file path is refused at once, not by a failure in the background later.
    with pytest.raises(InputError, match="is a file"):
        widget.save_session(mine / "labels.tif")
    widget.wait()
    assert _digests(mine) == before
    assert widget.controller.session_folder is None
    np.testing.assert_array_equal(widget.labels.data, labels)
