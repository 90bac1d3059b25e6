"""Propagation plans: the one meaning of forward, backward and both."""

from __future__ import annotations

import pytest

from napari_sam2.engine.plans import correction_passes, merge_corrections, plan_passes
from napari_sam2.errors import InputError


def _passes(*args):
    return [(p.start, p.reverse, p.max_frames) for p in plan_passes(*args)]


def test_forward_and_backward_start_at_the_outermost_prompts():
    assert _passes("forward", {3, 5}, 0, 9) == [(3, False, 7)]
    assert _passes("backward", {3, 5}, 0, 9) == [(5, True, 6)]


def test_both_is_forward_then_backward_from_the_earliest_prompt():
    fwd, bwd = plan_passes("both", {3, 5}, 0, 9)
    assert fwd.frames() == list(range(3, 10))
    assert bwd.frames() == [3, 2, 1, 0]
    # Every frame of the range once; the start frame is met by both passes.
    covered = fwd.frames() + bwd.frames()
    assert sorted(set(covered)) == list(range(10)) and len(covered) == 11
    # A single prompt: both ways from it.
    assert _passes("both", {4}, 0, 9) == [(4, False, 6), (4, True, 5)]


def test_prompts_outside_the_range():
    # A range after the prompt: the pass crosses frames 1..3 but writes 4..6 only.
    (fwd,) = plan_passes("forward", {1}, 4, 6)
    assert fwd.start == 1 and fwd.written() == 3
    # Prompts only after the range: backward from the earliest of them.
    assert _passes("backward", {8, 9}, 2, 5) == [(8, True, 7)]
    # Both with prompts on either side only: each pass from its nearest prompt.
    assert _passes("both", {1, 8}, 3, 5) == [(1, False, 5), (8, True, 6)]


def test_bad_plans_are_one_line_input_errors():
    with pytest.raises(InputError, match="click"):
        plan_passes("both", set(), 0, 9)
    with pytest.raises(InputError, match="backward"):
        plan_passes("backward", {1}, 4, 6)
    with pytest.raises(InputError, match="forward"):
        plan_passes("forward", {8}, 4, 6)
    with pytest.raises(InputError, match="direction"):
        plan_passes("sideways", {1}, 0, 6)
    with pytest.raises(InputError, match="after last"):
        plan_passes("forward", {1}, 6, 4)


def test_correction_follows_the_side_it_was_reached_from():
    (p,) = correction_passes(4, False, 0, 9)
    assert (p.start, p.reverse, p.max_frames) == (4, False, 6)
    (p,) = correction_passes(4, True, 0, 9)
    assert (p.start, p.reverse, p.max_frames) == (4, True, 5)
    assert len(correction_passes(4, None, 0, 9)) == 2
    assert correction_passes(12, None, 0, 9) == []


def test_corrections_merge_into_one_pass_per_direction():
    merged = merge_corrections([(4, False), (2, False), (6, True), (7, None)], 0, 9)
    assert [(p.start, p.reverse) for p in merged] == [(2, False), (7, True)]
    assert merge_corrections([(12, None)], 0, 9) == []
