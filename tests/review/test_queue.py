"""Review signals, the suspicion score and the review queue (Qt-free)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from napari_sam2 import InputError, VideoSession, build_model
from napari_sam2.engine.session import FrameResult
from napari_sam2.review import ReviewItem, ReviewQueue, SuspicionWeights, suspicion
from napari_sam2.review.score import risks
from napari_sam2.review.signals import ObjectSignals, SignalTracker, object_signals


def _result(frame, masks, ious=None, stability=None, scores=None, ids=None):
    masks = np.asarray(masks, bool)
    n = len(masks)
    logits = np.where(masks, 5.0, -5.0).astype(np.float32)
    return FrameResult(
        frame,
        tuple(ids or range(1, n + 1)),
        logits,
        np.full(n, 10.0, np.float32) if scores is None else np.asarray(scores, np.float32),
        None if ious is None else np.asarray(ious, np.float32),
        None if stability is None else np.asarray(stability, np.float32),
    )


def _disk(shape, center, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


# --------------------------------------------------------------------------- signals


def test_signals_measure_area_centroid_jumps_and_fragments():
    a = _disk((40, 40), (10, 10), 4)
    b = _disk((40, 40), (10, 20), 4)  # moved 10 px, same area
    frag = a | _disk((40, 40), (30, 30), 2)
    tracker = SignalTracker()
    (s0,) = tracker.observe(_result(0, [a], ious=[0.9], stability=[0.95]))
    assert s0.area == a.sum() and s0.area_jump is None and s0.centroid_jump is None
    assert s0.predicted_iou == pytest.approx(0.9) and s0.stability == pytest.approx(0.95)
    assert s0.components == 1 and s0.largest_share == 1.0
    (s1,) = tracker.observe(_result(1, [b]))
    diameter = math.sqrt(4 * a.sum() / math.pi)
    assert s1.area_jump == 0.0
    assert s1.centroid_jump == pytest.approx(10 / diameter)
    (s2,) = tracker.observe(_result(2, [frag]))
    assert s2.components == 2
    assert s2.largest_share == pytest.approx(a.sum() / frag.sum())


def test_signals_in_reverse_compare_with_the_next_frame():
    a = _disk((30, 30), (15, 15), 5)
    tracker = SignalTracker()
    tracker.observe(_result(5, [a]), reverse=True)
    (s,) = tracker.observe(_result(4, [np.zeros_like(a)]), reverse=True)
    assert s.area == 0 and s.area_jump == 1.0 and s.centroid_jump is None


def test_disagreement_with_the_other_direction():
    a = _disk((30, 30), (15, 15), 5)
    other = np.zeros(a.shape, np.int32)
    other[a] = 1
    other[:, :15] = 0  # the other pass kept half the mask
    (s,), _ = object_signals(_result(0, [a]), other_labels=other)
    kept = (a & (other == 1)).sum()
    assert s.disagreement == pytest.approx(1 - kept / a.sum())
    (s,), _ = object_signals(_result(0, [a]))
    assert s.disagreement is None


def test_overlap_is_the_share_of_a_mask_other_objects_claim_too():
    shape = (40, 60)
    a = _disk(shape, (20, 15), 6)
    b = _disk(shape, (20, 45), 6)  # apart from a
    lost = _disk(shape, (20, 47), 5)  # an object that latched onto b's cell
    sa, sb, sl = object_signals(_result(0, [a, b, lost]))[0]
    assert sa.overlap == 0.0
    assert sl.overlap == pytest.approx((lost & b).sum() / lost.sum()) and sl.overlap > 0.8
    assert sb.overlap == pytest.approx((lost & b).sum() / b.sum())
    empty = object_signals(_result(0, [a, np.zeros(shape, bool)]))[0]
    assert [s.overlap for s in empty] == [0.0, 0.0]


def test_nan_model_scores_are_missing_signals():
    a = _disk((20, 20), (10, 10), 3)
    (s,), _ = object_signals(_result(0, [a], ious=[np.nan], stability=[np.nan]))
    assert s.predicted_iou is None and s.stability is None


# --------------------------------------------------------------------------- score


def test_score_is_the_documented_noisy_or():
    s = ObjectSignals(
        frame=0,
        obj_id=1,
        predicted_iou=0.8,
        object_score=0.0,
        stability=0.9,
        area=100,
        area_jump=0.5,
        centroid_jump=2.0,
        components=2,
        largest_share=0.75,
        disagreement=0.1,
        overlap=0.4,
    )
    w = SuspicionWeights(1.0, 0.5, 1.0, 0.8, 0.8, 1.0, 1.0, 0.5)
    r = risks(s)
    assert r == pytest.approx(
        {
            "predicted_iou": 0.2,
            "object_score": 1.0,
            "stability": 0.1,
            "area_jump": 0.5,
            "centroid_jump": 1.0,
            "fragmentation": 0.25,
            "disagreement": 0.1,
            "overlap": 0.4,
        }
    )
    keep = (1 - 0.2) * (1 - 0.5) * (1 - 0.1) * (1 - 0.8 * 0.5) * (1 - 0.8) * (1 - 0.25) * 0.9
    keep *= 1 - 0.5 * 0.4
    assert suspicion(s, w) == pytest.approx(1 - keep)


def test_score_bounds_and_monotonicity():
    perfect = ObjectSignals(0, 1, 1.0, 30.0, 1.0, 50, 0.0, 0.0, 1, 1.0, 0.0)
    assert suspicion(perfect) == pytest.approx(0.0, abs=1e-9)
    worse = ObjectSignals(0, 1, 0.5, 30.0, 1.0, 50, 0.0, 0.0, 1, 1.0, 0.0)
    worst = ObjectSignals(0, 1, 0.0, 0.0, 0.0, 50, 1.0, 5.0, 9, 0.1, 1.0)
    assert 0 < suspicion(worse) < suspicion(worst) <= 1.0


def test_weights_are_checked():
    with pytest.raises(InputError, match="predicted_iou"):
        SuspicionWeights(predicted_iou=1.5)
    with pytest.raises(InputError, match="move_scale"):
        SuspicionWeights(move_scale=0)


# --------------------------------------------------------------------------- queue


def _queue(scores: dict) -> ReviewQueue:
    q = ReviewQueue()
    q.update(ReviewItem(f, o, s) for (f, o), s in scores.items())
    return q


def test_queue_walks_review_order_both_ways():
    q = _queue({(0, 1): 0.1, (1, 1): 0.9, (2, 1): 0.5, (2, 2): 0.5})
    assert [it.key for it in q.ranked()] == [(1, 1), (2, 1), (2, 2), (0, 1)]  # worst first
    # Review order: every object's worst first, then the rest.
    assert [it.key for it in q.items()] == [(1, 1), (2, 2), (2, 1), (0, 1)]
    assert q.previous() is None and q.current is None
    assert q.next().key == (1, 1)
    assert q.next().key == (2, 2)
    assert q.previous().key == (1, 1)
    assert q.previous() is None and q.current.key == (1, 1)
    for _ in range(3):
        q.next()
    assert q.current.key == (0, 1) and q.next() is None


def test_correction_removes_the_item_and_next_goes_on_from_its_place():
    q = _queue({(0, 1): 0.1, (1, 1): 0.9, (2, 1): 0.5})
    q.next()
    q.next()  # (2, 1)
    q.corrected(2, 1)
    assert q.current is None and len(q) == 2
    assert q.next().key == (0, 1)  # the item that took (2, 1)'s place
    q.update([ReviewItem(2, 1, 0.99)])  # re-propagation: a corrected pair stays out
    assert (2, 1) not in [it.key for it in q.items()]
    assert q.score(2, 1) == 0.99


def test_accepted_comes_back_when_repropagated_and_updates_reorder():
    q = _queue({(0, 1): 0.3, (1, 1): 0.6})
    q.accepted(1, 1)
    assert [it.key for it in q.items()] == [(0, 1)]
    q.update([ReviewItem(1, 1, 0.2), ReviewItem(0, 1, 0.1)])
    assert [it.key for it in q.items()] == [(1, 1), (0, 1)]


def test_min_score_hides_low_items_and_remove_object():
    q = ReviewQueue(min_score=0.4)
    q.update([ReviewItem(0, 1, 0.3), ReviewItem(0, 2, 0.5), ReviewItem(1, 2, 0.8)])
    assert [it.key for it in q.items()] == [(1, 2), (0, 2)]
    q.remove_object(2)
    assert len(q) == 0 and q.scores() == {(0, 1): 0.3}
    with pytest.raises(InputError, match="min_score"):
        ReviewQueue(min_score=2)


def test_queue_json_round_trip():
    q = ReviewQueue()
    a = _disk((20, 20), (10, 10), 3)
    q.observe(_result(0, [a, a], ious=[0.5, 0.9], stability=[1, 1]))
    q.observe(_result(1, [a, np.zeros_like(a)], ious=[0.5, 0.9], stability=[1, 1]))
    q.corrected(0, 1)
    q.accepted(1, 2)
    back = ReviewQueue.from_dict(json.loads(json.dumps(q.to_dict())))
    assert back.items() == q.items() and back.scores() == q.scores()
    with pytest.raises(InputError, match="review queue"):
        ReviewQueue.from_dict({"weights": {}})


def test_observe_ranks_a_vanished_object_first():
    q = ReviewQueue()
    a, b = _disk((30, 30), (8, 8), 4), _disk((30, 30), (20, 20), 4)
    q.observe(_result(0, [a, b], ious=[0.9, 0.9], stability=[1, 1]))
    q.observe(_result(1, [a, np.zeros_like(b)], ious=[0.9, 0.9], stability=[1, 1]))
    assert q.items()[0].key == (1, 2)


# --------------------------------------------------------------------------- the engine


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("sam2.1_hiera_tiny", image_size=256)


def test_frame_results_carry_the_decoders_own_scores(model):
    rng = np.random.default_rng(0)
    frames = rng.normal(100, 10, (3, 64, 64)).astype(np.float32)
    frames[:, 20:40, 20:40] += 200
    with VideoSession(model, frames) as s:
        r = s.add_points(0, 1, [(30, 30)], [1])
        s.add_mask(0, 2, np.pad(np.ones((10, 10), bool), ((5, 49), (5, 49))))
        assert r.predicted_ious.shape == (1,) and r.stability_scores.shape == (1,)
        results = list(s.propagate())
    first = results[0]
    assert first.predicted_ious.dtype == np.float32
    assert 0 <= first.predicted_ious[0] <= 1 and 0 <= first.stability_scores[0] <= 1
    assert np.isnan(first.predicted_ious[1])  # a mask prompt taken as is: no decoder score
    for r in results[1:]:  # tracked frames: every object has both scores
        assert np.all((r.predicted_ious >= 0) & (r.predicted_ious <= 1))
        assert np.all((r.stability_scores >= 0) & (r.stability_scores <= 1))
    q = ReviewQueue()
    for r in results:
        q.observe(r)
    assert len(q) == 6 and all(0 <= it.score <= 1 for it in q.items())


def test_batch_spreads_a_round_over_objects_then_over_time():
    q = ReviewQueue()
    # Object 1 failed from frame 0 on (every frame worse than anything else), 2 and 3 once.
    q.update([ReviewItem(f, 1, 0.99 - 0.01 * f) for f in range(10)])
    q.update([ReviewItem(6, 2, 0.5), ReviewItem(2, 3, 0.4), ReviewItem(8, 3, 0.1)])
    assert [it.key for it in q.ranked()][:3] == [(0, 1), (1, 1), (2, 1)]  # worst first
    batch = [it.key for it in q.batch(5)]
    # One per object first (worst object first), then a second look at object 1
    # half the clip away from its first, then object 3's other frame (far enough).
    assert batch == [(0, 1), (6, 2), (2, 3), (5, 1), (8, 3)]
    assert [it.key for it in q.items()][:5] == batch  # the list and Next follow it
    assert q.next().key == (0, 1) and q.next().key == (6, 2)
    assert [it.key for it in q.batch(2, exclude={(0, 1)})] == [(1, 1), (6, 2)]
    assert len(q.batch(100)) == len(q) == 13 and q.batch(0) == []
