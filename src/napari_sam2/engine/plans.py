"""Propagation plans: the one meaning of "forward", "backward" and "both".

Every caller that tracks objects over a stack (the widget, the command line and
:meth:`VideoSession.segment <napari_sam2.engine.session.VideoSession.segment>`)
asks :func:`plan_passes` which passes to run, so the three agree:

- ``forward``: from the earliest prompted frame in the range to its end;
- ``backward``: from the latest prompted frame in the range back to its start;
- ``both``: forward from the earliest prompted frame, then backward from that
  same frame. Each frame of the range is tracked once (the start frame is met
  by both passes); frames between two prompted frames are tracked forward.

When no prompt lies inside the range, forward starts at the latest prompt
before it and backward at the earliest prompt after it; frames crossed to reach
the range are computed but not written.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from ..errors import InputError

DIRECTIONS = ("forward", "backward", "both")


@dataclass(frozen=True)
class PropagationPass:
    """One engine pass: from ``start`` over ``max_frames`` frames, forward or backward.

    Results outside ``[first, last]`` (frames crossed to reach the range) are
    computed but not written.
    """

    start: int
    reverse: bool
    max_frames: int
    first: int
    last: int

    def frames(self) -> list[int]:
        """The frame indices this pass visits, in order."""
        step = -1 if self.reverse else 1
        return list(range(self.start, self.start + step * self.max_frames, step))

    def written(self) -> int:
        """How many of this pass's frames fall in the range."""
        return sum(self.first <= f <= self.last for f in self.frames())


def check_direction(direction: str, name: str = "direction") -> str:
    """``direction`` if it is forward, backward or both; else a one-line InputError."""
    if direction not in DIRECTIONS:
        raise InputError(f"{name}: must be forward, backward or both, got {direction!r}")
    return direction


def plan_passes(
    direction: str, prompted: Collection[int], first: int, last: int
) -> list[PropagationPass]:
    """The passes that track from the ``prompted`` frames over ``[first, last]`` (inclusive).

    See the module docstring for what each direction means. InputError when the
    direction is unknown, the range empty, there are no prompts, or no prompt
    to start a pass from.
    """
    check_direction(direction)
    if first > last:
        raise InputError(f"range: first frame {first} is after last frame {last}")
    frames = sorted({int(f) for f in prompted})
    if not frames:
        raise InputError("prompts: nothing to propagate; click on an object first")
    inside = [f for f in frames if first <= f <= last]
    passes = []
    if direction in ("forward", "both"):
        before = [f for f in frames if f < first]
        start = inside[0] if inside else (before[-1] if before else None)
        if start is None:
            raise InputError(
                f"range: no prompt at or before frame {last} to propagate forward from"
            )
        passes.append(PropagationPass(start, False, last - start + 1, first, last))
    if direction in ("backward", "both"):
        after = [f for f in frames if f > last]
        if inside:
            start = inside[0] if direction == "both" else inside[-1]
        else:
            start = after[0] if after else None
        if start is None:
            raise InputError(
                f"range: no prompt at or after frame {first} to propagate backward from"
            )
        passes.append(PropagationPass(start, True, start - first + 1, first, last))
    return passes


def correction_passes(
    frame: int, reached_reverse: bool | None, first: int, last: int
) -> list[PropagationPass]:
    """Re-propagation after a correction on ``frame``.

    A frame that propagation reached going forward is re-tracked forward from
    it, one reached going backward backward; ``None`` (a prompted frame)
    re-tracks both ways. Frames outside ``[first, last]`` are left alone.
    """
    if not first <= frame <= last:
        return []
    passes = []
    if reached_reverse is not True and frame < last:
        passes.append(PropagationPass(frame, False, last - frame + 1, first, last))
    if reached_reverse is not False and frame > first:
        passes.append(PropagationPass(frame, True, frame - first + 1, first, last))
    return passes


def merge_corrections(
    corrections: Collection[tuple[int, bool | None]], first: int, last: int
) -> list[PropagationPass]:
    """One forward and one backward pass covering every correction's re-propagation.

    ``corrections``: (frame, reached_reverse) pairs as in :func:`correction_passes`.
    The forward pass starts at the earliest forward start, the backward pass at
    the latest backward start.
    """
    passes = [p for f, r in corrections for p in correction_passes(f, r, first, last)]
    fwd = [p for p in passes if not p.reverse]
    bwd = [p for p in passes if p.reverse]
    merged = [min(fwd, key=lambda p: p.start)] if fwd else []
    merged += [max(bwd, key=lambda p: p.start)] if bwd else []
    return merged
