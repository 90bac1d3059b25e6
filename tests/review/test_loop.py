"""The simulated review loop: strategies, budget, exact effort, and the benchmark script."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from napari_sam2 import InputError
from napari_sam2.engine.session import FrameResult
from napari_sam2.review.loop import LoopConfig, review_loop, uniform_frames


class FailingTracker:
    """A stand-in for VideoSession: exact masks, except on ``failures``.

    On a failure (frame, object) the mask is shifted 8 columns (IoU about 0.3)
    and the decoder's predicted IoU is ``fail_iou`` (else 0.95), unless the
    pair was prompted: a click there makes it exact, except on ``stubborn``
    pairs, which only a mask prompt fixes.
    """

    def __init__(self, gt, failures, fail_iou=0.3, stubborn=()) -> None:
        self.gt = gt
        self.num_frames, *hw = gt.shape
        self.frame_shape = tuple(hw)
        self.failures = set(failures)
        self.fail_iou = fail_iou
        self.stubborn = set(stubborn)
        self.known: list[int] = []
        self.prompted: set[tuple[int, int]] = set()
        self.painted: set[tuple[int, int]] = set()
        self.clicks = 0
        self.masks = 0

    def _result(self, frame: int) -> FrameResult:
        logits, ious = [], []
        for obj in self.known:
            mask = self.gt[frame] == obj
            key = (frame, obj)
            fixed = key in self.painted or (key in self.prompted and key not in self.stubborn)
            bad = key in self.failures and not fixed
            if bad:
                mask = np.roll(mask, 8, axis=1)
            logits.append(np.where(mask, 5.0, -5.0))
            ious.append(self.fail_iou if bad else 0.95)
        n = len(self.known)
        return FrameResult(
            frame,
            tuple(self.known),
            np.asarray(logits, np.float32).reshape(n, *self.frame_shape),
            np.full(n, 10.0, np.float32),
            np.asarray(ious, np.float32),
            np.ones(n, np.float32),
        )

    def add_points(self, frame, obj_id, points, labels, clear=True):
        self.clicks += 1
        if obj_id not in self.known:
            self.known.append(obj_id)
        self.prompted.add((frame, obj_id))
        return self._result(frame)

    def add_mask(self, frame, obj_id, mask):
        self.masks += 1
        assert np.array_equal(mask, self.gt[frame] == obj_id)  # the annotator paints the truth
        self.painted.add((frame, obj_id))
        return self._result(frame)

    def propagate(self, start_frame=None, reverse=False, max_frames=None):
        frames = range(start_frame, -1, -1) if reverse else range(start_frame, self.num_frames)
        for t in frames:
            yield self._result(t)


def _gt(n_frames=20) -> np.ndarray:
    """Two objects on every frame: a disk and a square, moving right."""
    gt = np.zeros((n_frames, 40, 60), np.int32)
    yy, xx = np.mgrid[:40, :60]
    for t in range(n_frames):
        gt[t][(yy - 12) ** 2 + (xx - 12 - t // 2) ** 2 <= 36] = 1
        gt[t, 22:32, 30 + t // 2 : 40 + t // 2] = 2
    return gt


FAILURES = {(3, 1), (7, 2), (13, 1), (17, 2)}  # 4 of 40 pairs: the budget is 10 %


def test_guided_review_finds_the_failures_the_model_flags():
    gt = _gt()
    session = FailingTracker(gt, FAILURES)
    r = review_loop(session, gt, "guided", LoopConfig(budget=0.1, rounds=2))
    assert r.budget_pairs == 4
    assert r.rounds[-1].inspected == 4 and r.rounds[-1].corrected == 4
    assert r.final_jf == pytest.approx(1.0)
    assert r.initial_jf < 1.0
    # Exact effort: 2 first-frame clicks + 4 corrections, one click each.
    e = r.effort
    assert (e.clicks, e.boxes, e.mask_edits) == (6, 0, 0) == (session.clicks, 0, 0)
    assert e.edited_frames == 6 and e.edited_frames_pct == pytest.approx(100 * 6 / 40)
    assert e.clicks_per_clicked_frame == 1.0


def test_uniform_review_at_the_same_budget_misses_them():
    gt = _gt()
    guided = review_loop(FailingTracker(gt, FAILURES), gt, "guided")
    uniform = review_loop(FailingTracker(gt, FAILURES), gt, "uniform")
    assert uniform.rounds[-1].inspected == guided.rounds[-1].inspected == 4
    # Uniform looks at frames 10 and 5 (both objects): no failure there.
    assert uniform.rounds[-1].corrected == 0
    assert uniform.final_jf == pytest.approx(uniform.initial_jf)
    assert uniform.final_jf < guided.final_jf


def test_oracle_reads_the_ground_truth():
    gt = _gt()
    # The model's own score is blind here: failures look as confident as the rest.
    guided = review_loop(FailingTracker(gt, FAILURES, fail_iou=0.95), gt, "guided")
    oracle = review_loop(FailingTracker(gt, FAILURES, fail_iou=0.95), gt, "oracle")
    assert oracle.rounds[-1].corrected == 4 and oracle.final_jf == pytest.approx(1.0)
    assert guided.final_jf <= oracle.final_jf


def test_a_mask_the_clicks_cannot_fix_is_painted():
    gt = _gt()
    stubborn = {(7, 2), (17, 2)}
    session = FailingTracker(gt, FAILURES, stubborn=stubborn)
    r = review_loop(session, gt, "guided", LoopConfig(budget=0.1, rounds=2, clicks_per_frame=2))
    assert r.final_jf == pytest.approx(1.0)
    # 2 first-frame clicks; 4 corrections: 1 click on each easy one, 2 clicks and
    # a painted mask on each stubborn one.
    e = r.effort
    assert (e.clicks, e.mask_edits) == (2 + 2 * 1 + 2 * 2, 2) == (session.clicks, session.masks)
    assert e.edited_frames == 6
    # Clicks only (the protocol before painting): the stubborn pairs stay wrong.
    session = FailingTracker(gt, FAILURES, stubborn=stubborn)
    config = LoopConfig(budget=0.1, rounds=2, clicks_per_frame=2, paint=False)
    clicks_only = review_loop(session, gt, "guided", config)
    assert clicks_only.effort.mask_edits == 0 == session.masks
    assert clicks_only.final_jf < r.final_jf
    with pytest.raises(InputError, match="paint"):
        LoopConfig(paint="yes")


def test_uniform_frames_spread_every_prefix():
    order = uniform_frames(20)
    assert sorted(order) == list(range(20))
    assert order[:3] == [10, 5, 15]
    assert uniform_frames(1) == [0]


def test_bad_settings_are_input_errors():
    gt = _gt(4)
    with pytest.raises(InputError, match="strategy"):
        review_loop(FailingTracker(gt, ()), gt, "random")
    with pytest.raises(InputError, match="budget"):
        LoopConfig(budget=0)
    with pytest.raises(InputError, match="rounds"):
        LoopConfig(rounds=0)


def _load(name: str):
    path = Path(__file__).parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_benchmark_runs_with_a_random_model(tmp_path, capsys):
    out = tmp_path / "loop.json"
    argv = ["--image-size", "64", "--clips", "1", "--frames", "4", "--size", "32"]
    argv += ["--cells", "2", "--strategies", "guided,uniform", "--json", str(out)]
    payload = _load("review_loop").main(argv)
    assert json.loads(out.read_text())["summary"] == payload["summary"]
    assert [r["strategy"] for r in payload["summary"]] == ["guided", "uniform"]
    assert "| guided |" in capsys.readouterr().out
