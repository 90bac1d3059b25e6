"""The review queue: suspicious (frame, object) pairs in review order, with a cursor.

Review order (:func:`review_order`): the worst item of every object first, then
for each object a second one at least half the clip away from its first, and
so on, the spacing halving each pass. A correction re-tracks the whole object,
so the worst frame of another object is worth more than a second look at the
same failure; in the simulated loop this order beat uniform review and plain
worst-first did not (docs/review.md).

Qt-free; the widget drives it. It is fed the signals of every frame a
propagation yields (:meth:`ReviewQueue.observe`); the annotator walks it with
:meth:`~ReviewQueue.next` / :meth:`~ReviewQueue.previous`. An item leaves the
queue when it is corrected (a prompt there: the user's own mask is trusted from
then on) or accepted (looked at and fine: it stays out until a re-propagation
changes that mask). Re-propagated frames come back with their new scores.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from ..errors import InputError
from .score import SuspicionWeights, suspicion
from .signals import ObjectSignals, SignalTracker

__all__ = ["ReviewItem", "ReviewQueue", "review_order"]


@dataclass(frozen=True)
class ReviewItem:
    """One (frame, object) with its suspicion score in [0, 1] and the signals behind it."""

    frame: int
    obj_id: int
    score: float
    signals: ObjectSignals | None = None

    @property
    def key(self) -> tuple[int, int]:
        return self.frame, self.obj_id


class ReviewQueue:
    """Scored (frame, object) pairs in review order, and a cursor moving through them.

    ``min_score``: items scoring below it are not listed (they are kept, and
    listed again if a later update raises them).
    """

    def __init__(self, weights: SuspicionWeights | None = None, min_score: float = 0.0) -> None:
        if not 0.0 <= min_score <= 1.0:
            raise InputError(f"min_score: must be in [0, 1], got {min_score}")
        self.weights = weights or SuspicionWeights()
        self.min_score = float(min_score)
        self.tracker = SignalTracker()
        self._items: dict[tuple[int, int], ReviewItem] = {}
        self._corrected: set[tuple[int, int]] = set()
        self._accepted: set[tuple[int, int]] = set()
        self._order: list[tuple[int, int]] | None = None
        self._cursor: tuple[int, int] | None = None
        self._rank = 0  # the cursor's place in the order when it was last seen

    # -- feeding --------------------------------------------------------------

    def observe(self, result, reverse: bool = False, other_labels=None) -> list[ReviewItem]:
        """Score one :class:`~napari_sam2.video.FrameResult` as propagation yields it.

        ``reverse``: the pass runs backward; ``other_labels``: the frame's (H, W)
        labels from a pass in the other direction (for the disagreement signal).
        """
        signals = self.tracker.observe(result, reverse, other_labels)
        return self.update_signals(signals)

    def update_signals(self, signals: Iterable[ObjectSignals]) -> list[ReviewItem]:
        """Score signals and :meth:`update` with them; returns the new items."""
        items = [ReviewItem(s.frame, s.obj_id, suspicion(s, self.weights), s) for s in signals]
        self.update(items)
        return items

    def update(self, items: Iterable[ReviewItem]) -> None:
        """Add or replace items (a re-propagated mask replaces its old score and un-accepts it)."""
        for item in items:
            self._items[item.key] = item
            self._accepted.discard(item.key)
        self._order = None

    # -- the annotator's verdicts ---------------------------------------------

    def corrected(self, frame: int, obj_id: int) -> None:
        """The user prompted this (frame, object): it leaves the queue for good."""
        self._corrected.add((int(frame), int(obj_id)))
        self._order = None

    def accepted(self, frame: int, obj_id: int) -> None:
        """The user looked and the mask is fine: out until a re-propagation changes it."""
        self._accepted.add((int(frame), int(obj_id)))
        self._order = None

    def remove_object(self, obj_id: int) -> None:
        """Forget every item of an object (it was deleted)."""
        for store in (self._corrected, self._accepted):
            store.difference_update({k for k in store if k[1] == obj_id})
        for key in [k for k in self._items if k[1] == obj_id]:
            del self._items[key]
        self._order = None

    def clear(self) -> None:
        """Forget everything (a new stack or session)."""
        self.__init__(self.weights, self.min_score)

    # -- reading --------------------------------------------------------------

    def ranked(self) -> list[ReviewItem]:
        """The open items, worst first (ties: earlier frame, then lower id)."""
        done = self._corrected | self._accepted
        keep = [it for k, it in self._items.items() if k not in done and it.score >= self.min_score]
        keep.sort(key=lambda it: (-it.score, it.frame, it.obj_id))
        return keep

    def _open(self) -> list[tuple[int, int]]:
        if self._order is None:
            self._order = [it.key for it in review_order(self.ranked())]
        return self._order

    def items(self) -> list[ReviewItem]:
        """The open items in review order (see :func:`review_order`): what
        :meth:`next` walks and the widget lists."""
        return [self._items[k] for k in self._open()]

    def batch(self, k: int, exclude=()) -> list[ReviewItem]:
        """The first ``k`` open items in review order, leaving out ``exclude``
        ((frame, obj_id) keys): one round of review before re-tracking."""
        if k < 1:
            return []
        skip = set(exclude)
        return review_order([it for it in self.ranked() if it.key not in skip], k)

    def __len__(self) -> int:
        return len(self._open())

    def score(self, frame: int, obj_id: int) -> float | None:
        """The latest score of a (frame, object), open or not; None if never scored."""
        item = self._items.get((int(frame), int(obj_id)))
        return None if item is None else item.score

    def scores(self) -> dict[tuple[int, int], float]:
        """Every scored (frame, object) -> its latest score (open or not)."""
        return {k: it.score for k, it in self._items.items()}

    @property
    def current(self) -> ReviewItem | None:
        """The item under the cursor, if it is still open."""
        if self._cursor is None or self._cursor not in self._open():
            return None
        return self._items[self._cursor]

    def _step(self, delta: int) -> ReviewItem | None:
        order = self._open()
        if self._cursor is None:
            i = 0 if delta > 0 else -1
        elif self._cursor in order:
            i = order.index(self._cursor) + delta
        else:  # the cursor's item left the queue: the one now in its place is "next"
            i = self._rank if delta > 0 else self._rank - 1
        if not 0 <= i < len(order):
            return None
        self._cursor, self._rank = order[i], i
        return self._items[order[i]]

    def move_to(self, frame: int, obj_id: int) -> ReviewItem | None:
        """Put the cursor on an open (frame, object) and return it; None if it is not open."""
        key = (int(frame), int(obj_id))
        order = self._open()
        if key not in order:
            return None
        self._cursor, self._rank = key, order.index(key)
        return self._items[key]

    def next(self) -> ReviewItem | None:
        """Move to the next item in review order and return it; None past the end."""
        return self._step(1)

    def previous(self) -> ReviewItem | None:
        """Move back one item and return it; None before the first."""
        return self._step(-1)

    # -- saving ---------------------------------------------------------------

    def to_dict(self) -> dict:
        """JSON-ready: every score with its signals, and the verdicts."""
        return {
            "weights": asdict(self.weights),
            "min_score": self.min_score,
            "items": [
                {"frame": it.frame, "obj_id": it.obj_id, "score": it.score}
                | ({"signals": asdict(it.signals)} if it.signals is not None else {})
                for it in self._items.values()
            ],
            "corrected": sorted(list(k) for k in self._corrected),
            "accepted": sorted(list(k) for k in self._accepted),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ReviewQueue:
        """The inverse of :meth:`to_dict`."""
        try:
            queue = cls(SuspicionWeights(**data["weights"]), data["min_score"])
            for d in data["items"]:
                sig = d.get("signals")
                signals = None if sig is None else ObjectSignals(**sig)
                queue._items[(int(d["frame"]), int(d["obj_id"]))] = ReviewItem(
                    int(d["frame"]), int(d["obj_id"]), float(d["score"]), signals
                )
            queue._corrected = {(int(f), int(o)) for f, o in data["corrected"]}
            queue._accepted = {(int(f), int(o)) for f, o in data["accepted"]}
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"review queue: malformed saved data ({exc})") from None
        return queue


def review_order(ranked: Sequence[ReviewItem], k: int | None = None) -> list[ReviewItem]:
    """Items ``ranked`` worst first, reordered for review (the first ``k``, or all).

    Pass 1 takes the worst item of every object; each later pass takes, worst
    first, an object's items at least ``gap`` frames from all of its items taken
    so far, with ``gap`` half the items' frame span on pass 2 and halving each
    pass until any frame goes.
    """
    limit = len(ranked) if k is None else min(k, len(ranked))
    if limit < 1:
        return []
    span = max(it.frame for it in ranked) - min(it.frame for it in ranked) + 1
    chosen: list[ReviewItem] = []
    taken: dict[int, list[int]] = {}  # object -> its chosen frames, sorted
    left = list(ranked)
    gap = None  # pass 1: one per object
    while len(chosen) < limit:
        rest = []
        for it in left:
            mine = taken.setdefault(it.obj_id, [])
            if len(chosen) >= limit or (mine if gap is None else _near(mine, it.frame, gap)):
                rest.append(it)
                continue
            chosen.append(it)
            insort(mine, it.frame)
        left = rest
        gap = span // 2 if gap is None else gap // 2  # reaches 0: any frame goes
    return chosen


def _near(frames: list[int], frame: int, gap: int) -> bool:
    """Whether sorted ``frames`` has one closer than ``gap`` to ``frame``."""
    i = bisect_left(frames, frame)
    return (i < len(frames) and frames[i] - frame < gap) or (i > 0 and frame - frames[i - 1] < gap)
