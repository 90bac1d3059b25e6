"""Counting annotation effort from the prompts themselves, not from UI events.

The widget hands every state of its prompts (one
:class:`~napari_sam2.engine.prompts.FramePrompt` per (frame, object)) to a
:class:`PromptTally`, which compares it with the state it saw last and turns
the difference into effort events of an
:class:`~napari_sam2.review.effort.EffortLog`:

* a point more on a (frame, object) is a click (a point deleted counts
  nothing; a point added again later counts again);
* a new or changed box is a box (drawing one, or moving or resizing it);
* a new or changed mask prompt is a mask edit, with the number of pixels that
  changed.

Prompts that appear without an annotator (a saved session loaded) are taken
with :meth:`PromptTally.prime`, which counts nothing. Qt-free; ``(row, col)``
pixels, ``frame`` along the stack axis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .effort import EffortLog

__all__ = ["PromptChange", "PromptTally", "prompt_changes"]

Key = tuple[int, int]  # (frame, object id)


@dataclass(frozen=True)
class PromptChange:
    """One effort event read from two prompt states.

    ``kind``: "click", "box" or "mask_edit"; ``where``: the click's (row, col),
    the box (row0, col0, row1, col1), or () for a mask; ``positive``: the
    click's label; ``pixels``: pixels a mask edit changed.
    """

    kind: str
    frame: int
    obj_id: int
    where: tuple[float, ...] = ()
    positive: bool = True
    pixels: int = 0


@dataclass(frozen=True)
class _Seen:
    points: int
    box: tuple[float, float, float, float] | None
    mask: np.ndarray | None


def _seen(prompt) -> _Seen:
    box = None if prompt.box is None else tuple(float(v) for v in prompt.box)
    mask = None if prompt.mask is None else np.asarray(prompt.mask, bool)
    return _Seen(len(prompt.points), box, mask)


def prompt_changes(before: Mapping[Key, object], after: Mapping[Key, object]) -> list[PromptChange]:
    """The effort events that lead from prompt state ``before`` to ``after``.

    Both map (frame, object) to a FramePrompt (points ``(N, 2)`` (row, col) in
    click order, labels ``(N,)``, box, ``(H, W)`` bool mask). Sorted by key.
    """
    old = {k: _seen(p) for k, p in before.items()}
    return _changes(old, after)


def _changes(old: Mapping[Key, _Seen], after: Mapping[Key, object]) -> list[PromptChange]:
    out: list[PromptChange] = []
    for key in sorted(after):
        frame, obj = int(key[0]), int(key[1])
        new = after[key]
        was = old.get(key, _Seen(0, None, None))
        points = np.asarray(new.points, np.float64).reshape(-1, 2)
        labels = np.asarray(new.labels).reshape(-1)
        for i in range(was.points, len(points)):
            row, col = points[i]
            out.append(PromptChange("click", frame, obj, (float(row), float(col)), bool(labels[i])))
        now = _seen(new)
        if now.box is not None and now.box != was.box:
            out.append(PromptChange("box", frame, obj, now.box))
        if now.mask is not None:
            if was.mask is None or was.mask.shape != now.mask.shape:
                pixels = int(now.mask.sum())
            else:
                pixels = int((was.mask != now.mask).sum())
            if was.mask is None or pixels:
                out.append(PromptChange("mask_edit", frame, obj, pixels=pixels))
    return out


class PromptTally:
    """Remembers the last prompt state and records what changed into an :class:`EffortLog`."""

    def __init__(self) -> None:
        self._seen: dict[Key, _Seen] = {}

    def prime(self, prompts: Mapping[Key, object]) -> None:
        """Take ``prompts`` as seen without counting them (a loaded session's prompts)."""
        self._seen = {k: _seen(p) for k, p in prompts.items()}

    def clear(self) -> None:
        self._seen = {}

    def update(self, prompts: Mapping[Key, object], log: EffortLog) -> list[PromptChange]:
        """Record the changes since the last state into ``log``; returns them.

        Changes on frames outside the log's ``0..num_frames-1`` are not recorded.
        """
        changes = _changes(self._seen, prompts)
        self._seen = {k: _seen(p) for k, p in prompts.items()}
        kept = [c for c in changes if 0 <= c.frame < log.num_frames]
        for c in kept:
            if c.kind == "click":
                log.record_click(c.frame, c.obj_id, *c.where, positive=c.positive)
            elif c.kind == "box":
                log.record_box(c.frame, c.obj_id, c.where)
            else:
                log.record_mask_edit(c.frame, c.obj_id, c.pixels)
        return kept
