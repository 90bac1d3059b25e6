"""The widget's automatic mode: "Segment all, this frame" and "Track all cells".

Real napari viewer and the random-init model of test_widget. Random weights
find no cells, so the mask generator is replaced by one returning fixed
discs; what is tested is the wiring: new cells become objects with mask
prompts, tracking writes background pixels only as one undo step with
progress and Cancel, and the Tracks layer carries the division graph.
"""

# ruff: noqa: F811  (pytest fixtures imported from test_widget are parameters here)
from __future__ import annotations

import time

import numpy as np
import pytest
from test_widget import (  # noqa: F401
    N_FRAMES,
    SHAPE,
    TIMEOUT_MS,
    checkpoint,
    errors,
    make_widget,
    pytestmark,
)

from napari_sam2.errors import InputError
from napari_sam2.tracking.decisions import TrackConfig
from napari_sam2.tracking.mask_generator import GeneratedMasks
from napari_sam2.tracking.tracker import TrackingResult


def _disc(center, radius):
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def _fixed_generator(monkeypatch, masks, delay: float = 0.0) -> list:
    """The mask generator returns ``masks`` (best first); returns the list of calls."""
    calls = []

    class Fixed:
        def __init__(self, model, cfg):
            pass

        def generate(self, image, contrast_limits=None, **kwargs):
            assert np.shape(image)[:2] == SHAPE
            calls.append(contrast_limits)
            time.sleep(delay)
            n = len(masks)
            return GeneratedMasks(
                np.asarray(masks, bool), np.linspace(0.9, 0.8, n).astype(np.float32),
                np.ones(n, np.float32), np.zeros((n, 4), np.int64),
                np.zeros((n, 2), np.float32), np.zeros((n, 4), np.int64),
            )  # fmt: skip

    monkeypatch.setattr("napari_sam2.tracking.mask_generator.MaskGenerator", Fixed)
    return calls


def _paint(widget, where, value=9):
    widget.labels.data[where] = value
    widget.labels.refresh()


def test_segment_all_adds_new_cells_as_objects(make_widget, monkeypatch, qtbot):
    masks = [_disc((16, 16), 7), _disc((45, 45), 7), _disc((16, 48), 7), np.ones(SHAPE, bool)]
    calls = _fixed_generator(monkeypatch, masks)
    viewer, widget = make_widget()
    assert widget.automatic_panel.segment_all.text() == "Segment all, this frame"
    # Its section starts folded (the dock fits); the user opens it.
    assert not widget.automatic_panel.isVisibleTo(widget)
    widget._sections["automatic"].toggleButton().click()
    assert widget.automatic_panel.isVisibleTo(widget)
    frame = 2
    painted = np.zeros((N_FRAMES, *SHAPE), bool)
    painted[frame] = _disc((16, 48), 8)  # the user's own cell covers the third disc
    _paint(widget, painted)
    before = np.array(widget.labels.data)

    new = widget.segment_all(frame)
    assert calls and calls[0] is not None  # the session's intensity window
    # The fourth mask (the whole frame) is too big for a cell; the third is painted.
    assert len(new) == 2 and min(new) > 9 and set(new) <= set(widget.controller.objects)
    assert "2 new cells on frame 2" in widget.automatic_panel.status.text()
    labels = np.array(widget.labels.data)
    np.testing.assert_array_equal(labels[painted], 9)  # painted labels are never overwritten
    for obj, disc in zip(new, masks[:2]):
        assert np.array_equal(widget.controller.masks[(frame, obj)], disc)
        assert (labels[frame][disc] == obj).mean() > 0.8  # the mask prompt's preview
    assert not labels[[0, 1, 3, 4]].any()
    widget.labels.undo()  # the frame's new cells are one undo step
    np.testing.assert_array_equal(np.asarray(widget.labels.data), before)
    widget.labels.redo()

    widget.propagate("forward")  # the new objects track like manual ones
    assert set(new) <= set(np.unique(widget.labels.data[frame + 1]).tolist())
    # Again: every cell is labelled now, nothing is added.
    assert widget.segment_all(frame) == []


def test_segment_all_needs_a_model_and_a_frame_on_the_stack(make_widget, errors):
    viewer, widget = make_widget(load=False)
    with pytest.raises(InputError, match="model: load a model first"):
        widget.segment_all(0)
    with pytest.raises(InputError, match="frame 7 is not in 0..4"):
        widget.track_all_cells(7)


def test_track_all_cells_writes_background_only_as_one_undo_step(make_widget, monkeypatch):
    discs = [_disc((16, 16), 7), _disc((45, 45), 7)]
    _fixed_generator(monkeypatch, discs)
    viewer, widget = make_widget()
    assert widget.automatic_panel.track_all.text() == "Track all cells"
    painted = np.zeros((N_FRAMES, *SHAPE), bool)
    painted[:, 0:6, 50:64] = True
    _paint(widget, painted)
    before = np.array(widget.labels.data)

    result = widget.track_all_cells(0)
    labels = np.array(widget.labels.data)
    np.testing.assert_array_equal(labels[painted], 9)
    offset = widget.automatic.offset
    assert offset == 9 and result is widget.automatic.result
    assert result.labels.shape == labels.shape and set(result.lineage) >= {1, 2}
    for k, disc in enumerate(discs, 1):
        assert (labels[0][disc] == offset + k).all()  # the seeds, ids above the layer's
    # Every frame: the run's ids exactly where tracking put them and the pixel was free.
    free = before == 0
    expected = np.where(free & (result.labels > 0), result.labels + offset, before)
    np.testing.assert_array_equal(labels, expected)
    status = widget.propagate_panel.status.text()
    assert status == f"Track all: Done: {N_FRAMES} frames written", status
    assert widget.propagation.eta.done == N_FRAMES
    n, divided = len(result.lineage), len(result.divisions())
    found = widget.automatic_panel.status.text()
    assert found.startswith(f"Track all: {n} tracks, {divided} division"), found
    tracks = viewer.layers[widget.image.name + " SAM2 tracks"]
    assert set(np.unique(tracks.data[:, 0]).tolist()) == {offset + k for k in result.lineage}
    widget.labels.undo()  # the whole run is one undo step
    np.testing.assert_array_equal(np.asarray(widget.labels.data), before)


def test_track_all_cells_cancel_keeps_written_frames(make_widget, monkeypatch, qtbot):
    _fixed_generator(monkeypatch, [_disc((16, 16), 7)], delay=1.0)
    viewer, widget = make_widget()
    widget.track_all_cells(0, config=TrackConfig(detect_every=1), wait=False)
    qtbot.waitUntil(widget.propagate_panel.cancel.isEnabled, timeout=TIMEOUT_MS)
    qtbot.waitUntil(
        lambda: widget.propagation.eta is not None and widget.propagation.eta.done >= 1,
        timeout=TIMEOUT_MS,
    )
    assert "left" in widget.propagate_panel.status.text()  # the ETA
    widget.propagate_panel.cancel.click()
    assert widget.wait(timeout=60)
    done = widget.propagation.eta.done
    assert 1 <= done < N_FRAMES
    assert widget.propagate_panel.status.text().startswith("Track all: Cancelled")
    labels = np.asarray(widget.labels.data)
    assert labels[0].any() and not labels[done:].any()  # written frames stay, no more
    assert widget.automatic.result is None
    assert widget.image.name + " SAM2 tracks" not in viewer.layers
    assert not widget.propagate_panel.cancel.isEnabled()


def test_tracks_layer_shows_the_division_graph(make_widget, monkeypatch):
    viewer, widget = make_widget()
    labels = np.zeros((N_FRAMES, *SHAPE), np.int32)
    labels[:2, 20:30, 20:30] = 1
    labels[2:, 20:30, 20:24] = 2
    labels[2:, 20:30, 26:30] = 3
    auto = widget.automatic
    auto.offset = 4
    auto.result = TrackingResult(labels, {1: (0, 1, 0), 2: (2, 4, 1), 3: (2, 4, 1)})
    assert auto.show_tracks()
    layer = viewer.layers[widget.image.name + " SAM2 tracks"]
    assert layer.graph == {6: [5], 7: [5]}
    assert np.allclose(layer.scale, widget.image.scale)
    # Removing a daughter takes it out of the layer; the mother and sister stay.
    widget.remove_object(7)
    assert layer.graph == {6: [5]} and set(layer.data[:, 0].tolist()) == {5, 6}
    assert set(auto.result.lineage) == {1, 2} and not (auto.result.labels == 3).any()
    # A later run updates the same layer.
    labels[:] = 0
    labels[:, 5:9, 5:9] = 1
    auto.result = TrackingResult(labels, {1: (0, N_FRAMES - 1, 0)})
    assert auto.show_tracks()
    assert viewer.layers[widget.image.name + " SAM2 tracks"] is layer
    assert layer.graph == {} and set(layer.data[:, 0].tolist()) == {5}


def test_cells_divide_box_sets_the_division_rules(make_widget, monkeypatch):
    from napari_sam2.tracking import tracker

    _fixed_generator(monkeypatch, [_disc((16, 16), 7)])
    seen = []
    iter_tracking = tracker.iter_tracking

    def spy(session, generator, cfg, *args, **kw):
        seen.append((cfg.divisions, cfg.dim_ratio, cfg.round_aspect))
        return iter_tracking(session, generator, cfg, *args, **kw)

    monkeypatch.setattr(tracker, "iter_tracking", spy)
    viewer, widget = make_widget()
    panel = widget.automatic_panel
    assert panel.divide.isChecked() and panel.cue.isEnabled()
    widget.track_all_cells(0)
    panel.cue.setCurrentIndex(panel.cue.findData("rounding"))  # a cytoplasmic marker
    widget.track_all_cells(0)
    panel.divide.setChecked(False)
    assert not panel.cue.isEnabled()
    widget.track_all_cells(0)
    assert seen == [(True, 0.8, None), (True, None, 1.3), (False, None, 1.3)]


def test_a_clicked_track_is_corrected_by_the_interactive_session(
    make_widget, monkeypatch, tmp_path
):
    """After Track all, a click on a track hands it to the widget's session: limited to
    its own frames, re-tracked forward from the click, and saved with its frames."""
    _fixed_generator(monkeypatch, [_disc((16, 16), 7), _disc((45, 45), 7)])
    viewer, widget = make_widget()
    result = widget.track_all_cells(0, config=TrackConfig(divisions=False, end_after=99))
    offset = widget.automatic.offset
    assert set(result.lineage) == {1, 2}
    start, end, _ = result.lineage[1]
    obj = offset + 1
    # The review queue scores the tracks like manual objects, in the ids as written.
    queued = {(it.frame, it.obj_id) for it in widget.review.items()}
    assert queued and {o for _, o in queued} <= {offset + 1, offset + 2}
    assert {f for f, _ in queued} <= set(range(1, N_FRAMES))  # not the seeded frame
    # The track's frames, cut short as if it had ended after frame 2.
    widget.controller.handover.lineage[1] = (start, 2, 0)
    before = np.array(widget.labels.data)
    widget.propagate_panel.auto.setChecked(True)
    runs, seen = [], {}
    widget.propagation.run_listeners.append(runs.append)
    widget.propagation.result_listeners.append(
        lambda r, reverse: seen.__setitem__(r.frame, r.predicted_ids())
    )
    widget.add_point(1, 16, 16, obj_id=obj)
    # The click corrects a frame the run tracked forward: re-tracked forward from it.
    assert [(p.start, p.reverse) for p in runs[-1]] == [(1, False)]
    assert obj in seen[2] and obj not in seen[3] | seen[4]
    assert (1, obj) not in {(it.frame, it.obj_id) for it in widget.review.items()}
    from qtpy.QtCore import Qt

    table = widget.objects_panel.table
    shown = {
        table.item(r, 1).data(Qt.UserRole): table.item(r, 1).text() for r in range(table.rowCount())
    }
    assert shown[obj] == f"track {obj}"  # listed under Objects, named as a track
    session = widget.controller.session
    assert set(session.obj_ids) == {obj}  # track 2 was not prompted: it stays as written
    assert session.frame_range(obj) == (start, 2)
    np.testing.assert_array_equal(widget.controller.masks[(0, obj)], result.labels[0] == 1)
    labels = np.array(widget.labels.data)
    np.testing.assert_array_equal(labels[3:], before[3:])  # outside its frames: untouched
    # The Tracks layer follows the corrected masks.
    tracks = viewer.layers[widget.image.name + " SAM2 tracks"].data
    assert (labels[1:3] == obj).any()
    for t in (1, 2):
        rows = tracks[(tracks[:, 0] == obj) & (tracks[:, 1] == t)]
        mine = np.argwhere(labels[t] == obj)
        if len(mine):
            np.testing.assert_allclose(rows[0, 2:], mine.mean(axis=0), atol=1e-6)
        else:
            assert not len(rows)

    np.testing.assert_array_equal(labels == offset + 2, before == offset + 2)
    widget.save_session(tmp_path / "s")
    import json

    meta = json.loads((tmp_path / "s" / "session.json").read_text())
    assert {"id": obj, "name": f"track {obj}", "frames": [start, 2]} in meta["objects"]
    widget.load_session(tmp_path / "s")
    assert widget.controller.frame_ranges[obj] == (start, 2)
    assert widget.controller.session.frame_range(obj) == (start, 2)
