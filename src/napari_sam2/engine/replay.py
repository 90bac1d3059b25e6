"""Prompt replay: the one rule for sending prompts to a :class:`VideoSession`.

Both a prompts file (:func:`apply_prompts`) and the widget's live edits
(:func:`replay_frame`) prompt a session the same way, per object and frame:
a mask alone; otherwise the box, then every click in order, each click
refining the mask left by the one before (the first click starts afresh unless
a box came first).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..errors import InputError
from ..files.prompt_files import PointRow, Prompts, check_prompts, mask_frames, select_frames
from .prompts import FramePrompt, extends
from .session import FrameResult, VideoSession


def _frame_window(frames, num_frames: int) -> tuple[int, int]:
    """``frames`` (a range of step 1, or (start, stop)) -> (start, stop) of original indices."""
    if isinstance(frames, range):
        if frames.step != 1:
            raise InputError(f"frames: the range must have step 1, got {frames}")
        start, stop = frames.start, frames.stop
    else:
        try:
            start, stop = (int(v) for v in frames)
        except (TypeError, ValueError):
            raise InputError(f"frames: expected range(start, stop), got {frames!r}") from None
    if stop - start != num_frames:
        raise InputError(
            f"frames: {start}:{stop} is {stop - start} frames but the session holds {num_frames}"
        )
    return start, stop


def _point_groups(points: Iterable[PointRow]) -> dict[tuple[int, int], list[PointRow]]:
    """Clicks grouped per (frame, object); groups and clicks keep file order."""
    groups: dict[tuple[int, int], list[PointRow]] = {}
    for p in points:
        groups.setdefault((p.frame, p.obj), []).append(p)
    return groups


def replay_frame(
    session: VideoSession,
    frame: int,
    obj: int,
    prompt: FramePrompt,
    before: FramePrompt | None = None,
) -> FrameResult | None:
    """Send one object's prompts on one frame to ``session``: the one replay rule.

    A mask prompt alone replaces everything else of that object on that frame.
    Otherwise the box comes first, then the clicks one at a time in order, each
    refining the mask left by the one before; the first click starts afresh
    (``clear=True``) unless a box came first. ``before``: what the session was
    given for this (frame, object) last time; when ``prompt`` only adds clicks
    to it, just the new clicks are sent. Returns the last call's FrameResult
    (None when ``prompt`` is empty).
    """
    results = list(_replay_calls(session, frame, obj, prompt, before))
    return results[-1] if results else None


def _replay_calls(session, frame: int, obj: int, prompt: FramePrompt, before=None):
    """The session calls of :func:`replay_frame`, yielding each call's result."""
    if prompt.mask is not None:
        yield session.add_mask(frame, obj, prompt.mask)
        return
    known = 0 if before is None or not extends(before, prompt) else len(before.labels)
    if known == 0 and prompt.box is not None:
        yield session.add_box(frame, obj, prompt.box)
    for i in range(known, len(prompt.labels)):
        clear = i == 0 and prompt.box is None
        point, label = prompt.points[i : i + 1], prompt.labels[i : i + 1]
        yield session.add_points(frame, obj, point, label, clear=clear)


def frame_prompts(prompts: Prompts) -> dict[tuple[int, int], FramePrompt]:
    """A prompts file's rows as one :class:`FramePrompt` per (frame, object).

    Keys keep the order of first appearance: boxes, then clicks, then mask
    prompts by frame and object id. Clicks keep file order.
    """
    boxes = {(b.frame, b.obj): b.box for b in prompts.boxes}
    clicks = _point_groups(prompts.points)
    masks = {}
    for t in mask_frames(prompts.masks):
        plane = np.asarray(prompts.masks[t])
        for v in np.unique(plane):
            if v:
                masks[(int(t), int(v))] = plane == v
    out = {}
    for key in [*boxes, *clicks, *masks]:
        if key in out:
            continue
        rows = clicks.get(key, [])
        out[key] = FramePrompt(
            points=np.array([(p.row, p.col) for p in rows], np.float64).reshape(-1, 2),
            labels=np.array([p.label for p in rows], np.int32),
            box=boxes.get(key),
            mask=masks.get(key),
        )
    return out


def apply_prompts(session: VideoSession, prompts: Prompts, frames=None) -> list[FrameResult]:
    """Replay a prompts file onto a session by the rule of :func:`replay_frame`.

    Each (frame, object) gets its box, then its clicks in file order, or its
    mask prompt alone (a mask replaces that object's clicks and box on its
    frame); see :func:`frame_prompts` for the order.

    ``frames``: the original frame indices the session holds, as
    ``range(start, stop)`` (when it was given ``stack[start:stop]``); prompts
    are re-indexed and one outside the range is an error. ``None``: the session
    holds the whole stack.

    Everything is checked before the session is touched, so a bad prompt leaves
    it unchanged. Returns one FrameResult per session call made.
    """
    if frames is not None:
        start, stop = _frame_window(frames, session.num_frames)
        prompts = select_frames(prompts, start, stop)
    check_prompts(prompts, session.num_frames, tuple(session.frame_shape))
    results = []
    for (frame, obj), prompt in frame_prompts(prompts).items():
        results.extend(_replay_calls(session, frame, obj, prompt))
    return results
