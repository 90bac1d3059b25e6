"""The review queue of one interactive session, fed by its propagation runs.

:class:`SessionReview` is what the widget's review panel drives (Qt-free, so
unit tests reach every decision). It wraps a
:class:`~napari_sam2.review.queue.ReviewQueue` and adds what an interactive
session needs:

* **runs**: each propagation (or re-propagation) is a run of one or more
  passes; a frame that a run reaches in both directions is scored with the
  forward/backward disagreement (the second pass compares with the first);
* **only predicted objects**: an object the session has no prediction for on
  a frame (:meth:`~napari_sam2.video.FrameResult.predicted_ids`) is not scored
  there, so it cannot look like a vanished mask;
* **prompted pairs leave**: a (frame, object) the user prompted (clicks, box or
  mask) is the user's own answer and leaves the queue for good;
* **saving**: :meth:`to_dict` / :meth:`from_dict`, kept as ``review.json`` in the
  session folder.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..errors import InputError
from ..files.headers import check_header
from .queue import ReviewItem, ReviewQueue
from .score import SuspicionWeights

__all__ = ["REVIEW_FILE", "SessionReview"]

REVIEW_FILE = "review.json"
FORMAT = "napari-sam2 review"
VERSION = 1


def _predicted_only(result):
    """``result`` restricted to the objects it has a prediction for."""
    keep = result.predicted_ids()
    if len(keep) == len(result.obj_ids):
        return result
    return result.subset(i for i, o in enumerate(result.obj_ids) if o in keep)


class SessionReview:
    """Suspicious (frame, object) pairs of a session, in review order, updated as it is tracked."""

    def __init__(self, weights: SuspicionWeights | None = None, min_score: float = 0.0) -> None:
        self.queue = ReviewQueue(weights, min_score)
        self._run: dict[bool, dict[int, np.ndarray]] = {False: {}, True: {}}
        self._both: set[int] | None = None  # frames the run reaches both ways (None: any)

    # -- feeding --------------------------------------------------------------

    def run_started(self, passes=None) -> None:
        """A new propagation run begins: its passes compare only with each other.

        ``passes``: the run's :class:`~napari_sam2.engine.plans.PropagationPass`
        list, if known. Then a frame's labels are kept for the disagreement
        signal only where a pass in the other direction will reach it, so a run
        holds no label image per frame (a forward "Track all" run: none at all).
        """
        self._run = {False: {}, True: {}}
        self._both = None
        if passes is not None:
            reached = {False: set(), True: set()}
            for p in passes:
                reached[p.reverse].update(f for f in p.frames() if p.first <= f <= p.last)
            self._both = reached[False] & reached[True]

    def observe(self, result, reverse: bool) -> list[ReviewItem]:
        """Score one propagated :class:`~napari_sam2.video.FrameResult`; returns its new items."""
        result = _predicted_only(result)
        other = self._run[not reverse].pop(result.frame, None)
        if self._both is None or result.frame in self._both:  # the other pass will need it
            self._run[reverse][result.frame] = result.label_image()
        if not result.obj_ids:
            return []
        return self.queue.observe(result, reverse=reverse, other_labels=other)

    def prompted(self, keys: Iterable[tuple[int, int]]) -> None:
        """The user prompted these (frame, object) pairs: they leave the queue."""
        for frame, obj in keys:
            self.queue.corrected(frame, obj)

    def accept(self, frame: int, obj_id: int) -> None:
        """The mask looked fine: out of the queue until a re-propagation changes it."""
        self.queue.accepted(frame, obj_id)

    def remove_object(self, obj_id: int) -> None:
        self.queue.remove_object(int(obj_id))

    def clear(self) -> None:
        """A new stack or session: forget every score."""
        self.queue.clear()
        self.run_started()

    # -- walking --------------------------------------------------------------

    def items(self, limit: int | None = None) -> list[ReviewItem]:
        """The open items in review order (at most ``limit``)."""
        items = self.queue.items()
        return items if limit is None else items[:limit]

    def __len__(self) -> int:
        return len(self.queue)

    @property
    def current(self) -> ReviewItem | None:
        return self.queue.current

    def next(self) -> ReviewItem | None:
        return self.queue.next()

    def previous(self) -> ReviewItem | None:
        return self.queue.previous()

    def move_to(self, frame: int, obj_id: int) -> ReviewItem | None:
        return self.queue.move_to(frame, obj_id)

    # -- saving ---------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "queue": self.queue.to_dict()}

    @classmethod
    def from_dict(cls, data: dict, source: str = "review queue") -> SessionReview:
        """The inverse of :meth:`to_dict`; InputError naming ``source`` if malformed."""
        check_header(data, FORMAT, VERSION, "review queue", source)
        review = cls()
        try:
            review.queue = ReviewQueue.from_dict(data["queue"])
        except (KeyError, TypeError) as exc:
            raise InputError(f"{source}: malformed review queue ({exc})") from None
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None
        return review
