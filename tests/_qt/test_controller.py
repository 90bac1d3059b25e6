"""The widget's Qt-free logic: label merging, prompt grouping, plans, session files."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2._qt.controller import (
    Eta,
    Sam2Controller,
    changed_keys,
    clip_to_frame,
    collect_prompts,
    format_seconds,
    group_boxes,
    group_points,
    label_write,
    merge_labels,
)
from napari_sam2._qt.writer import labels_for_tiff, write_labels_tiff
from napari_sam2.engine.prompts import FramePrompt, extends
from napari_sam2.errors import InputError
from napari_sam2.files.stacks import Stack

# --------------------------------------------------------------------------- labels


def test_merge_keeps_painted_ids_and_clears_lost_objects():
    current = np.array([[0, 1, 1, 9], [2, 2, 0, 9]], np.int32)
    predicted = np.array([[1, 1, 0, 1], [0, 2, 2, 2]], np.int32)
    out = merge_labels(current, predicted, tracked={1, 2})
    # 9 was painted by the user (not tracked): never overwritten, even where predicted.
    assert out.tolist() == [[1, 1, 0, 9], [0, 2, 2, 9]]
    assert out.dtype == np.int32


def test_label_write_indices_put_the_frame_on_the_stack_axis():
    current = np.zeros((3, 4), np.int32)
    predicted = np.zeros((3, 4), np.int32)
    predicted[1, 2] = 5
    assert label_write(current, current, {5}, axis=0, frame=7) is None
    where, values = label_write(current, predicted, {5}, axis=2, frame=7)
    assert [w.tolist() for w in where] == [[1], [2], [7]]
    assert values.tolist() == [5]


# --------------------------------------------------------------------------- prompts


def test_group_points_and_boxes_by_frame_and_object():
    coords = [[2, 10, 11], [2, 20, 21], [3, 5, 6], [2.2, 1, 1]]
    groups = group_points(coords, labels=[1, 0, 1, 1], objs=[1, 1, 1, 2], axis=0)
    assert sorted(groups) == [(2, 1), (2, 2), (3, 1)]
    pts, labs = groups[(2, 1)]
    assert pts.tolist() == [[10, 11], [20, 21]] and labs.tolist() == [1, 0]
    rect = np.array([[4, 1, 2], [4, 1, 8], [4, 6, 8], [4, 6, 2]])
    boxes = group_boxes([rect, rect + [0, 1, 1]], objs=[3, 3], axis=0)
    assert boxes == {(4, 3): (2.0, 3.0, 7.0, 9.0)}  # the last one drawn wins


def test_changed_keys_finds_new_edited_and_deleted_prompts():
    a = FramePrompt(np.array([[1.0, 2.0]], np.float32), np.array([1], np.int32))
    b = FramePrompt(np.array([[1.0, 2.0], [3, 4]], np.float32), np.array([1, 0], np.int32))
    applied = {(0, 1): a, (1, 1): a}
    current = {(0, 1): a, (2, 1): a, (1, 1): b}
    assert changed_keys(current, applied) == [(1, 1), (2, 1)]
    assert changed_keys({}, applied) == [(0, 1), (1, 1)]
    assert extends(a, b) and not extends(b, a)
    boxed = FramePrompt(b.points, b.labels, box=(0, 0, 5, 5))
    assert not extends(a, boxed)


def test_collect_prompts_and_clip():
    prompts = collect_prompts(
        {(0, 1): (np.array([[-0.4, 63.6]], np.float32), np.array([1]))},
        {(0, 2): (1.0, 2.0, 3.0, 4.0)},
        {(1, 1): np.ones((4, 4), bool)},
    )
    assert sorted(prompts) == [(0, 1), (0, 2), (1, 1)]
    assert prompts[(0, 2)].box == (1.0, 2.0, 3.0, 4.0) and not prompts[(0, 2)].empty
    clipped = clip_to_frame(prompts[(0, 1)], (64, 64))
    assert np.allclose(clipped.points, [[0.0, 63.0]])  # a click on the border pixel
    assert np.allclose(clip_to_frame(prompts[(0, 1)], (64, 72)).points, [[0.0, 63.6]])
    far = FramePrompt(np.array([[10.0, 90.0]], np.float32), np.array([1]))
    assert clip_to_frame(far, (64, 64)).points.tolist() == [[10.0, 90.0]]
    assert FramePrompt().empty


# --------------------------------------------------------------------------- edits and corrections


def test_controller_correction_bookkeeping():
    from napari_sam2.engine.session import FrameResult

    ctrl = Sam2Controller()
    prompt = FramePrompt(np.zeros((1, 2), np.float32), np.ones(1, np.int32))
    ctrl.mark_applied((2, 1), prompt)
    for frame, reverse in [(2, False), (3, False), (4, False), (1, True)]:
        empty = np.zeros((1, 2, 2), np.float32)
        ctrl.record_reached(FrameResult(frame, (1,), empty, np.zeros(1)), reverse)
    assert ctrl.correction(3, 1) == (True, False)
    assert ctrl.correction(1, 1) == (True, True)
    assert ctrl.correction(2, 1) == (True, None)  # the prompted frame: both ways
    assert ctrl.correction(3, 7) == (False, None)
    assert ctrl.add_object() == 1 and ctrl.add_object(taken=[9]) == 10
    assert ctrl.prompted_frames() == {2}


def _click(row, col, label=1) -> FramePrompt:
    return FramePrompt(np.array([[row, col]], np.float32), np.array([label], np.int32))


def _reached(ctrl, obj, frames):
    from napari_sam2.engine.session import FrameResult

    for frame, reverse in frames:
        empty = np.zeros((1, 2, 2), np.float32)
        ctrl.record_reached(FrameResult(frame, (obj,), empty, np.zeros(1)), reverse)


def test_edits_decide_previews_and_corrections_without_qt():
    """The widget's correction rules, decided by the controller from plain prompt dicts."""
    ctrl = Sam2Controller()
    first = {(2, 1): _click(5, 5), (2, 2): _click(9, 9)}
    edits = ctrl.take_edits(first, num_frames=6)
    # New prompts on frames never reached: previews only; ids become objects.
    assert edits.corrections == [] and edits.outside == []
    assert sorted(edits.by_frame) == [2] and {i[0] for i in edits.by_frame[2]} == {1, 2}
    assert set(ctrl.objects) == {1, 2} and ctrl.prompted_frames() == {2}
    assert ctrl.take_edits(first, 6).by_frame == {}  # nothing changed: nothing to send

    # Propagation reached object 1 forward on 3..5 and backward on 0..1, object 2 on 3.
    _reached(ctrl, 1, [(2, False), (3, False), (4, False), (5, False), (1, True), (0, True)])
    _reached(ctrl, 2, [(3, False)])
    now = dict(first)
    now[(4, 1)] = _click(1, 1)  # a click on a frame tracked forward
    now[(0, 1)] = _click(2, 2)  # ... and one tracked backward
    now[(2, 1)] = FramePrompt(  # an extra click on the prompted frame
        np.array([[5, 5], [6, 6]], np.float32), np.array([1, 0], np.int32)
    )
    now[(9, 1)] = _click(3, 3)  # a frame outside the stack
    edits = ctrl.take_edits(now, num_frames=6)
    assert sorted(edits.corrections, key=str) == sorted([(4, False), (0, True), (2, None)], key=str)
    assert edits.outside == [(9, 1)] and (9, 1) not in ctrl.applied
    obj, new, old, others = next(i for i in edits.by_frame[2] if i[0] == 1)
    assert len(new.labels) == 2 and len(old.labels) == 1 and others

    # Deleting object 2's only prompt: it leaves the session; that corrects nothing.
    del now[(2, 2)]
    edits = ctrl.take_edits(now, num_frames=6)
    assert edits.corrections == [] and edits.by_frame == {2: [(2, None, first[(2, 2)], False)]}
    assert (2, 2) not in ctrl.applied
    ctrl.objects_left({2})
    assert ctrl.correction(3, 2) == (False, None)

    # A failed preview is sent again on the next edit.
    ctrl.forget_applied([(4, 1)])
    assert list(ctrl.take_edits(now, num_frames=6).by_frame) == [4]


def test_controller_owns_its_object_and_mask_state():
    ctrl = Sam2Controller()
    ctrl.set_mask_prompt(1, 3, np.ones((2, 2)))
    ctrl.set_mask_prompt(2, 4, np.ones((2, 2)))
    ctrl.drop_mask_prompts(lambda key: key[1] == 3)
    assert list(ctrl.masks) == [(2, 4)] and ctrl.masks[(2, 4)].dtype == bool
    ctrl.add_object(4)
    ctrl.rename_object(4, "nucleus")
    ctrl.rename_object(4, "")
    assert ctrl.objects == {4: "nucleus"}
    ctrl.mark_applied((2, 4), _click(0, 0))
    ctrl.remove_object_prompts(4)
    assert ctrl.objects == {} and ctrl.masks == {} and ctrl.applied == {}
    assert ctrl.set_stack_kind("z-stack") == "z" and ctrl.set_stack_kind("time-lapse") == "time"
    ctrl.session_replayed({(1, 5): _click(0, 0)}, {5: {2: True}})
    assert ctrl.prompted_frames(5) == {1} and ctrl.correction(2, 5) == (True, True)


def test_eta_and_messages():
    eta = Eta(10)
    assert eta.text() == "0/10 frames"
    eta.step()
    assert eta.text().startswith("1/10 frames") and eta.seconds_left() >= 0
    assert format_seconds(42) == "42 s" and format_seconds(185) == "3 min 05 s"
    assert format_seconds(3720) == "1 h 02 min"


# --------------------------------------------------------------------------- files


def test_writer_uses_smallest_unsigned_type(tmp_path):
    import tifffile

    labels = np.zeros((2, 4, 4), np.int32)
    labels[1, 1, 1] = 300
    assert labels_for_tiff(labels).dtype == np.uint16
    (path,) = write_labels_tiff(str(tmp_path / "out"), labels, {"axis_labels": ("t", "y", "x")})
    assert path.endswith(".tif")
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "TYX"
        np.testing.assert_array_equal(tif.asarray(), labels)
    with pytest.raises(ValueError, match="negative"):
        labels_for_tiff(-labels)


def test_sample_data_is_small_noisy_16bit():
    from napari_sam2._qt.sample_data import sample_timelapse, sample_zstack

    [(image, meta, kind)] = sample_timelapse(n_frames=3, shape=(32, 32))
    assert kind == "image" and image.dtype == np.uint16 and image.shape == (3, 32, 32)
    assert meta["contrast_limits"][0] < meta["contrast_limits"][1]
    [(stack, meta, _)] = sample_zstack(n_slices=4, shape=(32, 32))
    assert stack.shape == (4, 32, 32) and meta["scale"][0] > 1
    assert meta["metadata"]["napari_sam2_stack_axis"] == "z"


def test_multiscale_and_rgb_layers_give_full_resolution_frames():
    from napari.layers import Image

    from napari_sam2._qt.layers import image_frames, spatial_shape

    stack = np.zeros((3, 32, 32), np.uint16)
    pyramid = Image([stack, stack[:, ::2, ::2]], multiscale=True)
    data, rgb = image_frames(pyramid)
    assert data is pyramid.data[0] and not rgb and spatial_shape(pyramid) == (3, 32, 32)
    colour = Image(np.zeros((3, 16, 16, 3), np.uint8), rgb=True)
    assert image_frames(colour)[1] and spatial_shape(colour) == (3, 16, 16)


def test_session_computes_in_the_chosen_precision(monkeypatch):
    import torch

    from napari_sam2 import build_model
    from napari_sam2.engine import precision

    controller = Sam2Controller()
    controller.set_model(build_model("sam2.1_hiera_tiny", 64), "tiny", "cpu", "float32")
    stack = Stack(np.zeros((2, 64, 64), np.uint8), axis=0)
    session = controller.open_session(stack)
    assert session.dtype == torch.float32
    session.close()
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    controller.precision = "bfloat16"
    with pytest.raises(InputError, match="^dtype: 'bfloat16' needs a CPU"):
        controller.open_session(stack)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    session = controller.open_session(stack)
    assert session.dtype == torch.bfloat16
    session.close()


def test_prompted_tracks_are_handed_to_the_session_within_their_frames():
    """A "Track all cells" track the user prompts becomes an object: its first frame's
    mask as mask prompt, its frames as range, a click inside it a forward correction."""
    from napari_sam2._qt.automatic_rules import TrackHandover

    labels = np.zeros((5, 8, 8), np.int32)
    labels[:2, 2:6, 2:6] = 1  # the mother, frames 0-1
    labels[2:, 2:6, 2:4] = 2  # daughters from frame 2
    labels[2:, 2:6, 4:6] = 3
    ctrl = Sam2Controller()
    assert not ctrl.hand_over_tracks({(3, 12): _click(3, 4)})  # no run yet
    ctrl.handover = TrackHandover(labels, {1: (0, 1, 0), 2: (2, 4, 1), 3: (2, 4, 1)}, 10)
    assert 12 in ctrl.handover and 2 not in ctrl.handover and 14 not in ctrl.handover
    current = {(3, 12): _click(3, 2), (1, 5): _click(1, 1)}  # daughter 2 (id 12); object 5
    layer = np.where(labels > 0, labels + 10, 0)  # as written
    layer[3, 6:8, 2:4] = 12  # the user painted more of daughter 2 on frame 3
    assert ctrl.hand_over_tracks(current, layer, 0)
    np.testing.assert_array_equal(ctrl.masks[(2, 12)], labels[2] == 2)
    assert ctrl.frame_ranges == {12: (2, 4)} and 12 in ctrl.written
    # What the run wrote may be corrected; what the user painted stays theirs.
    assert list(ctrl.painted[12]) == [3]
    np.testing.assert_array_equal(
        np.argwhere(ctrl.painted[12][3]), np.argwhere(layer[3] == 12)[-4:]
    )
    assert ctrl.objects[12] == "track 12" and 5 not in ctrl.objects  # 5 is no track
    edits = ctrl.take_edits({**current, (2, 12): FramePrompt(mask=ctrl.masks[(2, 12)])}, 5)
    assert edits.corrections == [(3, False)]  # the click re-tracks forward; the mask does not
    assert not ctrl.hand_over_tracks(current)  # once only
    # A click on a track's first frame replaces its mask there; a removed track stays gone.
    assert ctrl.hand_over_tracks({(0, 11): _click(3, 3)}) and (0, 11) not in ctrl.masks
    ctrl.remove_object_prompts(13)
    assert not ctrl.hand_over_tracks({(2, 13): _click(3, 5)}) and 13 not in ctrl.frame_ranges
    meta = ctrl.session_meta({}, {}, 0)
    assert {"id": 12, "name": "track 12", "frames": [2, 4]} in meta["objects"]
