"""Prompt replay: the one rule, for prompt files and for the widget's live edits."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.engine.prompts import FramePrompt
from napari_sam2.engine.replay import apply_prompts, frame_prompts, replay_frame
from napari_sam2.errors import InputError
from napari_sam2.files.prompt_files import BoxRow, PointRow, Prompts


class FakeSession:
    """Records the calls apply_prompts makes (VideoSession's prompt API)."""

    def __init__(self, num_frames=4, frame_shape=(32, 40)):
        self.num_frames, self.frame_shape, self.calls = num_frames, frame_shape, []

    def add_box(self, frame, obj_id, box):
        self.calls.append(("box", frame, obj_id, tuple(box)))
        return len(self.calls)

    def add_points(self, frame, obj_id, points, labels, clear=True):
        self.calls.append(
            ("points", frame, obj_id, [tuple(p) for p in points], list(labels), clear)
        )
        return len(self.calls)

    def add_mask(self, frame, obj_id, mask):
        self.calls.append(("mask", frame, obj_id, int(np.count_nonzero(mask))))
        return len(self.calls)


def test_apply_prompts_order_and_clear_flags():
    points = (
        PointRow(1, 5, 6, 1, 2),
        PointRow(0, 1, 2, 1, 1),
        PointRow(1, 7, 8, 0, 2),
        PointRow(0, 3, 4, 0, 1),
    )
    boxes = (BoxRow(0, 0, 0, 10, 10, 1),)
    masks = np.zeros((4, 32, 40), np.int32)
    masks[3, :2, :3] = 9
    masks[3, 5:6, 5:6] = 4
    session = FakeSession()
    results = apply_prompts(session, Prompts(points, boxes, masks))
    # One (frame, object) at a time: boxed keys first, then clicked ones, then masks.
    assert session.calls == [
        ("box", 0, 1, (0, 0, 10, 10)),
        # (frame 0, object 1) has a box: even its first click keeps it
        ("points", 0, 1, [(1, 2)], [1], False),
        ("points", 0, 1, [(3, 4)], [0], False),
        # first click of (frame 1, object 2): fresh; then added to it
        ("points", 1, 2, [(5, 6)], [1], True),
        ("points", 1, 2, [(7, 8)], [0], False),
        ("mask", 3, 4, 1),
        ("mask", 3, 9, 6),
    ]
    assert results == list(range(1, 8))


def test_apply_prompts_reindexes_frames_and_checks_before_touching():
    prompts = Prompts((PointRow(5, 1, 1, 1, 1), PointRow(6, 2, 2, 1, 3)))
    session = FakeSession(num_frames=2)
    apply_prompts(session, prompts, frames=range(5, 7))
    assert [c[1] for c in session.calls] == [0, 1]

    session = FakeSession(num_frames=2)
    with pytest.raises(InputError, match="outside the selected frames 6:8"):
        apply_prompts(session, prompts, frames=range(6, 8))
    with pytest.raises(InputError, match="does not exist"):
        apply_prompts(session, prompts)
    bad = Prompts((PointRow(0, 1, 1, 1, 1), PointRow(1, 1, 99, 1, 1)))
    with pytest.raises(InputError, match="outside the image"):
        apply_prompts(session, bad)
    assert session.calls == []


def _clicks(*rows, box=None, mask=None) -> FramePrompt:
    pts = np.array([(r, c) for r, c, _ in rows], np.float32).reshape(-1, 2)
    return FramePrompt(pts, np.array([lab for *_, lab in rows], np.int32), box, mask)


def test_replay_frame_sends_only_new_clicks_when_they_extend():
    session = FakeSession()
    before = _clicks((1, 2, 1))
    after = _clicks((1, 2, 1), (3, 4, 0))
    assert replay_frame(session, 0, 1, before) == 1
    replay_frame(session, 0, 1, after, before)
    assert session.calls == [
        ("points", 0, 1, [(1, 2)], [1], True),
        ("points", 0, 1, [(3, 4)], [0], False),  # only the new click, added to the first
    ]


def test_replay_frame_replays_any_other_edit_and_masks_alone():
    session = FakeSession()
    before = _clicks((1, 2, 1), (3, 4, 0))
    moved = _clicks((1, 2, 1), (5, 5, 0))  # an edited click: the frame is replayed
    replay_frame(session, 2, 1, moved, before)
    boxed = _clicks((1, 2, 1), box=(0, 0, 9, 9))
    replay_frame(session, 2, 1, boxed, moved)
    mask = np.zeros((32, 40), bool)
    mask[:2, :2] = True
    replay_frame(session, 2, 1, _clicks((1, 2, 1), mask=mask))
    assert session.calls == [
        ("points", 2, 1, [(1, 2)], [1], True),
        ("points", 2, 1, [(5, 5)], [0], False),
        ("box", 2, 1, (0, 0, 9, 9)),
        ("points", 2, 1, [(1, 2)], [1], False),  # a box came first: the click keeps it
        ("mask", 2, 1, 4),  # a mask prompt alone
    ]
    assert replay_frame(session, 2, 1, FramePrompt()) is None


def test_frame_prompts_group_file_rows_per_frame_and_object():
    rows = (PointRow(1, 5, 6, 1, 2), PointRow(0, 1, 2, 1, 1), PointRow(1, 7, 8, 0, 2))
    grouped = frame_prompts(Prompts(rows, (BoxRow(0, 0, 0, 10, 10, 1),)))
    assert list(grouped) == [(0, 1), (1, 2)]
    assert grouped[(0, 1)].box == (0, 0, 10, 10) and grouped[(0, 1)].labels.tolist() == [1]
    assert grouped[(1, 2)].points.tolist() == [[5, 6], [7, 8]] and grouped[(1, 2)].box is None
