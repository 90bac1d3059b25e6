"""Review and improve, in the real widget: the review queue, effort statistics, fine-tuning.

Uses the fixtures of test_widget (a real napari viewer with the 5-frame sample
and a random-init tiny model at 256 px).
"""

# ruff: noqa: F811  (pytest fixtures imported from test_widget are parameters here)
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from test_widget import (  # noqa: F401
    N_FRAMES,
    TIMEOUT_MS,
    _skip,
    _two_objects,
    checkpoint,
    errors,
    make_widget,
)

from napari_sam2.errors import InputError

pytestmark = pytest.mark.skipif(_skip is not None, reason=_skip or "")


def _press(viewer, key: str) -> None:
    """Run the viewer's key binding for ``key`` as napari does on a key press."""
    from napari.utils.key_bindings import coerce_keybinding

    viewer.keymap[coerce_keybinding(key)](viewer)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- review queue


def test_review_queue_lists_jumps_and_follows_a_correction(make_widget, qtbot):
    viewer, widget = make_widget()
    _two_objects(widget, frame=2)
    widget.propagate("both")
    items = widget.review.items()
    scores = [it.score for it in items]
    assert scores == sorted(scores, reverse=True)
    # Every tracked (frame, object) but the prompted frame, of both objects.
    assert {it.key for it in items} == {(t, o) for t in range(N_FRAMES) for o in (1, 2)} - {
        (2, 1),
        (2, 2),
    }
    table = widget.review_panel.table
    qtbot.waitUntil(lambda: table.rowCount() == len(items), timeout=TIMEOUT_MS)
    assert widget._sections["review"].text() == f"Review and improve: {len(items)} to check"

    first = widget.review.next()
    assert first.key == items[0].key
    assert widget.current_frame() == first.frame and widget.labels.selected_label == first.obj_id
    _press(viewer, ".")  # the key binding moves on
    second = widget.review.review.current
    assert second.key == items[1].key and widget.current_frame() == second.frame
    _press(viewer, ",")
    assert widget.review.review.current.key == first.key
    assert widget.effort.log.events[-1].frame == first.frame  # jumps count as visits

    # Accept takes the pair out and moves on.
    widget.review.accept()
    assert first.key not in {it.key for it in widget.review.items()}

    # A row clicked jumps there; a correction there (a middle frame, so that
    # something lies beyond it): out of the queue, re-propagated, re-scored.
    target = next(it for it in widget.review.items() if it.frame in (1, 3))
    row = [it.key for it in widget.review.items()].index(target.key)
    table.cellClicked.emit(row, 0)
    assert widget.review.review.current.key == target.key
    assert widget.current_frame() == target.frame
    frame, obj = target.key
    before = {it.key: it for it in widget.review.items()}
    seen = []
    widget.propagation.result_listeners.append(lambda r, rev: seen.append(r.frame))
    widget.add_point(frame, 30, 30, obj_id=obj)
    widget.wait()
    assert seen, "the correction re-propagated"
    keys = {it.key for it in widget.review.items()}
    assert (frame, obj) not in keys
    # The re-propagated frames were scored again (new items, the random model's
    # scores may well be the same numbers).
    after = {it.key: it for it in widget.review.items()}
    again = [(t, obj) for t in seen if t != frame]
    assert again and all(k in after and after[k] is not before.get(k) for k in again)
    qtbot.waitUntil(lambda: table.rowCount() == len(keys), timeout=TIMEOUT_MS)

    # Removing an object removes its pairs.
    widget.remove_object(2)
    assert all(it.obj_id == 1 for it in widget.review.items())


# --------------------------------------------------------------------------- effort


def _scripted_session(widget) -> None:
    """3 clicks, 1 box, 1 mask edit on 4 (frame, object) pairs, then a propagation."""
    widget.add_point(0, 20, 20, obj_id=1)
    widget.add_point(0, 5, 5, positive=False, obj_id=1)
    widget.add_point(2, 45, 45, obj_id=2)
    widget.add_box(3, 30, 30, 50, 50, obj_id=2)
    widget.labels.data[4, 10:20, 10:20] = 1  # painted, then sent as a mask prompt
    widget.use_painted_mask(frame=4, obj_id=1)
    widget.propagate("forward")


def test_scripted_session_counts_exactly_and_survives_save_and_load(make_widget, tmp_path):
    viewer, widget = make_widget()
    t = [1000.0]

    def tick():
        t[0] += 2.0
        return t[0]

    widget.effort.log.clock = tick
    _scripted_session(widget)
    s = widget.effort_stats()
    assert (s.clicks, s.boxes, s.mask_edits) == (3, 1, 1)
    assert (s.frames, s.objects, s.edited_frames) == (N_FRAMES, 2, 4)
    assert s.edited_frames_pct == pytest.approx(100 * 4 / (N_FRAMES * 2))
    assert s.clicked_frames == 2 and s.clicks_per_clicked_frame == 1.5
    n_events = len(widget.effort.log.events)
    passes = sum(type(e).__name__ == "Propagation" for e in widget.effort.log.events)
    assert passes >= 1 and n_events == 5 + passes  # the edits and the propagation passes
    assert s.active_s == pytest.approx(2.0 * (n_events - 1))
    assert widget.effort_panel.values["Clicks"].text() == "3"
    assert widget.effort_panel.values["Edited frames"].text().startswith("4 (40.0 %)")

    folder = tmp_path / "run1"
    widget.save_session(folder)
    saved = json.loads((folder / "effort.json").read_text())
    assert len(saved["events"]) == n_events
    assert (folder / "review.json").is_file()
    review_keys = [it.key for it in widget.review.items()]

    viewer2, other = make_widget()
    other.load_session(folder)
    s2 = other.effort_stats()
    assert s2 == s  # loading replays prompts but counts nothing new
    assert [it.key for it in other.review.items()] == review_keys
    other.add_point(1, 20, 20, obj_id=1)  # counting goes on
    assert other.effort_stats().clicks == 4

    # A damaged effort.json: the load fails and changes nothing.
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    (bad / "effort.json").write_text('{"format": "napari-sam2 effort", "version": 1}')
    labels_before = np.array(other.labels.data)
    with pytest.raises(InputError, match="effort"):
        other.load_session(bad)
    assert other.effort_stats().clicks == 4
    np.testing.assert_array_equal(other.labels.data, labels_before)


# --------------------------------------------------------------------------- fine-tuning


def test_cancelled_finetune_leaves_no_file_and_no_picker_entry(
    make_widget, checkpoint, qtbot, errors
):
    viewer, widget = make_widget()
    before = _sha(checkpoint)
    _two_objects(widget)
    widget.propagate("both")  # every frame labelled: clips may start anywhere
    widget.finetune(steps=20, clip_length=2, wait=False)
    assert widget.finetuner.running
    qtbot.waitUntil(lambda: widget.finetune_panel.progress.value() >= 1, timeout=10 * TIMEOUT_MS)
    widget.add_point(1, 20, 20, obj_id=1)  # the widget keeps working meanwhile
    widget.finetuner.cancel()
    assert widget.finetuner.wait(10 * TIMEOUT_MS / 1000)
    assert widget.finetuner.entries() == []
    folder = widget.finetuner._folder()
    assert not folder.exists() or list(folder.iterdir()) == []
    assert "Cancelled" in widget.finetune_panel.status.text(), errors
    assert _sha(checkpoint) == before


def test_finetune_two_steps_appears_in_the_picker_and_loads(make_widget, checkpoint, errors):
    viewer, widget = make_widget()
    before = _sha(checkpoint)
    _two_objects(widget)
    widget.propagate("both")
    path = widget.finetune(steps=2, clip_length=2)
    assert path is not None and path.is_file(), errors
    assert _sha(checkpoint) == before  # the old checkpoint is untouched
    [(name, where, tip)] = widget.finetuner.entries()
    assert where == str(path) and name == path.stem
    assert checkpoint.name in tip and "2 steps" in tip and "1 session" in tip
    combo = widget.model_panel.checkpoint
    combo.setCurrentIndex(combo.findData(str(path)))
    assert widget.model_panel.source() == str(path)
    widget.load_model(widget.model_panel.source(), device="cpu")
    assert widget.controller.model_source == str(path) and not errors
    assert widget.controller.model.cfg.image_size == 256
    # A new widget lists it too (read from the fine-tuned folder).
    viewer2, other = make_widget(load=False)
    assert [e[1] for e in other.finetuner.entries()] == [str(path)]


def test_finetune_refuses_without_labels_or_model(make_widget, errors):
    viewer, widget = make_widget(load=False)
    with pytest.raises(InputError, match="model"):
        widget.finetune(steps=1)
