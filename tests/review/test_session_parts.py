"""The Qt-free parts behind the widget's review panel and effort statistics.

:class:`PromptTally` turns prompt states into exact effort counts;
:class:`SessionReview` feeds the review queue from propagation runs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_sam2.engine.prompts import FramePrompt
from napari_sam2.engine.session import NO_OBJECT_LOGIT, FrameResult
from napari_sam2.errors import InputError
from napari_sam2.review.effort import EffortLog
from napari_sam2.review.session_review import SessionReview
from napari_sam2.review.tally import PromptTally, prompt_changes


def _fp(points=(), labels=None, box=None, mask=None):
    pts = np.asarray(points, np.float32).reshape(-1, 2)
    labs = np.ones(len(pts), np.int32) if labels is None else np.asarray(labels, np.int32)
    return FramePrompt(pts, labs, box, mask)


def _clock():
    t = [0.0]

    def tick():
        t[0] += 1.0
        return t[0]

    return tick


# --------------------------------------------------------------------------- tally


def test_tally_counts_each_added_point_box_and_mask_once():
    log = EffortLog(5, clock=_clock())
    tally = PromptTally()
    tally.update({(0, 1): _fp([(3, 4)])}, log)
    tally.update({(0, 1): _fp([(3, 4), (5, 6)], [1, 0])}, log)
    # A second object's box, then the box resized: two boxes.
    state = {(0, 1): _fp([(3, 4), (5, 6)], [1, 0]), (2, 2): _fp(box=(1, 1, 9, 9))}
    tally.update(state, log)
    state[(2, 2)] = _fp(box=(1, 1, 9, 12))
    tally.update(state, log)
    tally.update(state, log)  # nothing changed: nothing counted
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:4] = True
    state[(3, 1)] = _fp(mask=mask)
    changes = tally.update(state, log)
    assert [c.kind for c in changes] == ["mask_edit"] and changes[0].pixels == 4
    s = log.stats()
    assert (s.clicks, s.boxes, s.mask_edits) == (2, 2, 1)
    assert s.edited_frames == 3  # (0, 1), (2, 2), (3, 1)
    assert s.clicks_per_clicked_frame == 2.0
    clicks = [e for e in log.events if type(e).__name__ == "Click"]
    assert [(c.row, c.col, c.positive) for c in clicks] == [(3, 4, True), (5, 6, False)]


def test_tally_deleting_counts_nothing_and_re_adding_counts_again():
    log = EffortLog(3, clock=_clock())
    tally = PromptTally()
    tally.update({(1, 1): _fp([(1, 1), (2, 2)])}, log)
    tally.update({(1, 1): _fp([(1, 1)])}, log)
    tally.update({}, log)
    tally.update({(1, 1): _fp([(4, 4)])}, log)
    assert log.stats().clicks == 3


def test_tally_prime_counts_nothing_and_frames_outside_are_ignored():
    log = EffortLog(2, clock=_clock())
    tally = PromptTally()
    tally.prime({(0, 1): _fp([(1, 1), (2, 2)], box=(0, 0, 3, 3))})
    tally.update({(0, 1): _fp([(1, 1), (2, 2)], box=(0, 0, 3, 3)), (7, 1): _fp([(1, 1)])}, log)
    assert log.events == []
    assert len(prompt_changes({}, {(7, 1): _fp([(1, 1)])})) == 1


# --------------------------------------------------------------------------- review


def _result(frame, masks, ious, ids=(1, 2), scores=None):
    masks = np.asarray(masks, bool)
    logits = np.where(masks, 5.0, -5.0).astype(np.float32)
    n = len(ids)
    scores = np.full(n, 10.0, np.float32) if scores is None else np.asarray(scores, np.float32)
    return FrameResult(
        frame, tuple(ids), logits, scores, np.asarray(ious, np.float32), np.ones(n, np.float32)
    )


def _square(r, c, s=6, shape=(32, 32)):
    m = np.zeros(shape, bool)
    m[r : r + s, c : c + s] = True
    return m


def test_session_review_ranks_worst_first_and_prompted_pairs_leave():
    review = SessionReview()
    review.run_started()
    for t in range(4):
        bad = 0.2 if t == 2 else 0.95
        review.observe(_result(t, [_square(4, 4 + t), _square(20, 20)], [0.95, bad]), False)
    first = review.items()[0]
    assert (first.frame, first.obj_id) == (2, 2)
    assert review.next().key == (2, 2)
    review.prompted([(2, 2)])
    assert (2, 2) not in [it.key for it in review.items()]
    # The next item is the one now first in the queue.
    assert review.next().key == review.items()[0].key
    # A listed pair can be jumped to; a closed one cannot.
    last = review.items()[-1]
    assert review.move_to(*last.key) == last and review.current == last
    assert review.move_to(2, 2) is None and review.current == last
    assert review.previous().key == review.items()[-2].key


def test_session_review_scores_disagreement_and_skips_unpredicted_objects():
    review = SessionReview()
    review.run_started()
    review.observe(_result(1, [_square(4, 4), _square(20, 20)], [0.99, 0.99]), False)
    # Backward pass of the same run: object 2 moved far away -> disagreement.
    backward = _result(1, [_square(4, 4), _square(2, 22)], [0.99, 0.99])
    review.observe(backward, True)
    sig = {it.obj_id: it.signals for it in review.items()}
    assert sig[1].disagreement == 0.0 and sig[2].disagreement == 1.0
    # An object without a prediction on a frame is not scored there.
    logits = np.stack([_square(4, 4), _square(20, 20)]).astype(np.float32) * 10 - 5
    r = FrameResult(3, (1, 2), logits, np.array([10.0, NO_OBJECT_LOGIT], np.float32))
    review.observe(r, False)
    assert review.queue.score(3, 1) is not None and review.queue.score(3, 2) is None


def test_session_review_round_trips_and_refuses_garbage():
    review = SessionReview()
    review.observe(_result(0, [_square(4, 4), _square(20, 20)], [0.5, 0.9]), False)
    review.prompted([(0, 1)])
    again = SessionReview.from_dict(json.loads(json.dumps(review.to_dict())))
    assert [it.key for it in again.items()] == [it.key for it in review.items()] == [(0, 2)]
    with pytest.raises(InputError, match="review"):
        SessionReview.from_dict({"format": "napari-sam2 review", "version": 1, "queue": {}})
    with pytest.raises(InputError, match="not a napari-sam2 review"):
        SessionReview.from_dict({"format": "x"})


def test_a_run_keeps_labels_only_where_both_directions_meet():
    """Disagreement needs the other pass's labels; a run keeps them only on frames a pass
    in the other direction will reach, so a long forward run holds none."""
    from napari_sam2.engine.plans import PropagationPass

    review = SessionReview()
    review.run_started([PropagationPass(0, False, 40, 0, 39)])  # forward only
    for t in range(40):
        review.observe(_result(t, [_square(4, 4), _square(20, 20)], [0.9, 0.9]), False)
    assert sum(len(v) for v in review._run.values()) == 0
    # Forward 1..5, then backward 3..0: frames 1-3 are met twice.
    review.run_started([PropagationPass(1, False, 5, 0, 5), PropagationPass(3, True, 4, 0, 5)])
    for t in range(1, 6):
        review.observe(_result(t, [_square(4, 4), _square(20, 20)], [0.9, 0.9]), False)
    assert set(review._run[False]) == {1, 2, 3}
    moved = _result(2, [_square(4, 4), _square(2, 22)], [0.9, 0.9])
    review.observe(moved, True)
    sig = {it.obj_id: it.signals for it in review.items() if it.frame == 2}
    assert sig[2].disagreement == 1.0 and sig[1].disagreement == 0.0
