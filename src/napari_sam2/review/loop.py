"""The review loop, simulated: does the review queue find the failures worth correcting?

A simulated annotator (the clicks of :mod:`napari_sam2.interactive`: the
deepest point of the larger error region, one at a time) works a clip in the
SAM 2 paper's data-engine way:

1. **Initial annotation**: clicks on each object's first frame (up to
   ``clicks_per_frame``, then painted if they fall short, as below), then
   tracking over the whole clip.
2. **Review**, in ``rounds`` rounds: the annotator inspects ``budget`` (a
   fraction) of all (frame, object) pairs in total, split evenly over the rounds.
   An inspected mask with IoU below ``good_iou`` is corrected with clicks; one
   at or above it is accepted as is. When the clicks (at most
   ``clicks_per_frame``) leave it below ``good_iou``, the annotator paints the
   mask (``paint``, a mask edit: the true mask as the prompt), as one would
   rather than leave a bad mask to condition tracking; ``paint=False`` keeps
   whatever the clicks gave (the protocol before 2026-12-03). After each round
   tracking is re-run, and the next round sees the new masks. Which pairs get inspected is the
   *strategy*:

   * ``"guided"``: a round of the :class:`~napari_sam2.review.queue.ReviewQueue`
     (the model's own suspicion score, no ground truth), spread over objects
     and time by :meth:`~napari_sam2.review.queue.ReviewQueue.batch`;
   * ``"worst-first"``: the queue's top pairs by score alone, not spread
     (:meth:`~napari_sam2.review.queue.ReviewQueue.ranked`; the first version of
     the guided strategy, kept as an ablation);
   * ``"uniform"``: the baseline, frames spread evenly over the clip (each
     new frame halves the largest gap left), all objects of a frame in turn;
   * ``"oracle"``: the pairs of lowest true IoU (an upper bound: it reads the
     ground truth, which no annotator's tool can).

Tracking each round: forward from the earliest prompted frame to the end, then
backward from the latest prompted frame to the start; each frame keeps the
last pass's masks. Frames covered by both passes get the forward/backward
disagreement signal. Effort is counted by an :class:`~napari_sam2.review.effort.EffortLog`
(so with the same definitions as the widget's statistics) and J&F by
:func:`~napari_sam2.evaluate.jf_scores`.
"""

from __future__ import annotations

import math
from contextlib import closing
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError
from ..evaluation.interactive import _check_gt, _click, first_frames, iou_table, object_ids
from ..evaluation.metrics import jaccard, jf_scores
from .effort import Click, EffortLog, EffortStats, MaskEdit
from .queue import ReviewQueue
from .score import SuspicionWeights
from .signals import ObjectSignals

__all__ = [
    "STRATEGIES",
    "LoopConfig",
    "LoopResult",
    "LoopRound",
    "first_pass_signals",
    "review_loop",
    "run_review_loop",
]

STRATEGIES = ("guided", "worst-first", "uniform", "oracle")


@dataclass(frozen=True)
class LoopConfig:
    """How the simulated annotator works (see the module doc)."""

    budget: float = 0.10
    rounds: int = 2
    clicks_per_frame: int = 3
    good_iou: float = 0.9
    paint: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.budget <= 1.0:
            raise InputError(f"budget: must be in (0, 1], got {self.budget}")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise InputError(f"rounds: must be an integer >= 1, got {self.rounds!r}")
        if not isinstance(self.clicks_per_frame, int) or self.clicks_per_frame < 1:
            raise InputError(f"clicks_per_frame: must be >= 1, got {self.clicks_per_frame!r}")
        if not 0.0 < self.good_iou <= 1.0:
            raise InputError(f"good_iou: must be in (0, 1], got {self.good_iou}")
        if not isinstance(self.paint, bool):
            raise InputError(f"paint: must be True or False, got {self.paint!r}")


@dataclass(frozen=True)
class LoopRound:
    """After one round: pairs inspected and corrected so far, and J&F."""

    round: int
    inspected: int
    corrected: int
    JF: float


@dataclass(frozen=True)
class LoopResult:
    """One strategy on one clip. ``rounds[0]`` is the initial annotation (round 0)."""

    strategy: str
    frames: int
    objects: tuple[int, ...]
    budget_pairs: int
    rounds: tuple[LoopRound, ...]
    effort: EffortStats

    @property
    def final_jf(self) -> float:
        return self.rounds[-1].JF

    @property
    def initial_jf(self) -> float:
        return self.rounds[0].JF

    def as_dict(self) -> dict:
        return {
            "strategy": self.strategy,
            "frames": self.frames,
            "objects": list(self.objects),
            "budget_pairs": self.budget_pairs,
            "rounds": [asdict(r) for r in self.rounds],
            "effort": asdict(self.effort),
            "initial_JF": self.initial_jf,
            "final_JF": self.final_jf,
        }


def uniform_frames(num_frames: int) -> list[int]:
    """All frames, ordered so that every prefix is spread evenly over the clip.

    The middle first, then the middles of the two halves, and so on (a van der
    Corput order); ties go to the earlier frame.
    """
    order, seen, k = [], set(), 0
    while len(order) < num_frames:
        k += 1
        # radical inverse of k in base 2, in (0, 1)
        x, f, i = 0.0, 0.5, k
        while i:
            x += f * (i & 1)
            i >>= 1
            f /= 2
        t = min(num_frames - 1, int(x * num_frames))
        if t not in seen:  # every frame comes once k passes 2 * num_frames
            seen.add(t)
            order.append(t)
    return order


class _Annotator:
    """The clip's state: prompts, label volume, queue and effort log."""

    def __init__(self, session, gt, config: LoopConfig, weights) -> None:
        self.session, self.gt, self.cfg = session, gt, config
        self.objects = object_ids(gt)
        self.labels = np.zeros(gt.shape, np.int32)
        self.queue = ReviewQueue(weights)
        self._t = 0.0
        self.log = EffortLog(gt.shape[0], len(self.objects), clock=self._tick)
        self.prompted: set[tuple[int, int]] = set()
        self.inspected: set[tuple[int, int]] = set()
        self.corrected = 0

    def _tick(self) -> float:
        self._t += 1.0
        return self._t

    def click(self, frame: int, obj: int) -> int:
        """Corrective clicks on (frame, object); logs them. Returns how many."""
        before = self.labels[frame]
        n, self.labels[frame] = _click(
            self.session,
            frame,
            obj,
            self.gt[frame] == obj,
            before,
            self.cfg.clicks_per_frame,
            self.cfg.good_iou,
        )
        for _ in range(n):  # the click positions are not needed for the counts
            self.log.add(Click(self._tick(), frame, obj, 0.0, 0.0))
        if n and self.cfg.paint:
            truth, mine = self.gt[frame] == obj, self.labels[frame] == obj
            if jaccard(mine, truth) < self.cfg.good_iou:
                # The clicks did not get there: the annotator paints the mask instead
                # of leaving a bad one to condition tracking (a mask edit).
                self.labels[frame] = self.session.add_mask(frame, obj, truth).label_image()
                self.log.add(MaskEdit(self._tick(), frame, obj, int((mine != truth).sum())))
        if n:
            self.prompted.add((frame, obj))
            self.queue.corrected(frame, obj)
        return n

    def track(self) -> None:
        """Forward from the earliest prompt, then backward from the latest (see module doc)."""
        first = min(f for f, _ in self.prompted)
        last = max(f for f, _ in self.prompted)
        forward: dict[int, np.ndarray] = {}
        with closing(self.session.propagate(first)) as results:
            for r in results:
                forward[r.frame] = self.labels[r.frame] = r.label_image()
                self.queue.observe(r, reverse=False)
        self.log.record_propagation(first, False, self.gt.shape[0] - first)
        with closing(self.session.propagate(last, reverse=True)) as results:
            for r in results:
                self.labels[r.frame] = r.label_image()
                self.queue.observe(r, reverse=True, other_labels=forward.get(r.frame))
        self.log.record_propagation(last, True, last + 1)

    def jf(self) -> float:
        return jf_scores(self.labels, self.gt).JF_mean

    def pick(self, strategy: str, k: int) -> list[tuple[int, int]]:
        """The next ``k`` (frame, object) pairs to inspect, none inspected or prompted before."""
        done = self.inspected | self.prompted
        if strategy == "guided":
            return [it.key for it in self.queue.batch(k, exclude=done)]
        if strategy == "worst-first":
            ranked = [it.key for it in self.queue.ranked()]
        elif strategy == "uniform":
            ranked = [(t, o) for t in uniform_frames(self.gt.shape[0]) for o in self.objects]
        else:  # oracle
            ious = iou_table(self.labels, self.gt, self.objects)
            order = np.argsort(ious, axis=None, kind="stable")
            ranked = [
                (int(i // len(self.objects)), self.objects[i % len(self.objects)]) for i in order
            ]
        return [key for key in ranked if key not in done][:k]


def _initial_annotation(session, gt_labels, cfg: LoopConfig, weights) -> _Annotator:
    """Step 1 of the loop: clicks on each object's first frame, then tracking."""
    ann = _Annotator(session, _check_gt(session, gt_labels), cfg, weights)
    for obj, frame in first_frames(ann.gt).items():
        ann.click(frame, obj)
    if not ann.prompted:
        raise InputError("gt_labels: no object could be clicked")
    ann.track()
    return ann


def review_loop(
    session,
    gt_labels,
    strategy: str = "guided",
    config: LoopConfig | None = None,
    weights: SuspicionWeights | None = None,
) -> LoopResult:
    """Simulate the data-engine loop on one clip with one strategy (see the module doc).

    Args:
        session: a fresh :class:`~napari_sam2.video.VideoSession` (or alike) over the frames.
        gt_labels: ``(T, H, W)`` integer ground truth, 0 background.
        strategy: "guided", "uniform" or "oracle".
        config: budget, rounds, clicks per frame, the IoU an inspection accepts.
        weights: the suspicion score's weights (guided strategy).
    """
    if strategy not in STRATEGIES:
        raise InputError(f"strategy: expected one of {STRATEGIES}, got {strategy!r}")
    cfg = config or LoopConfig()
    ann = _initial_annotation(session, gt_labels, cfg, weights)
    gt = ann.gt
    rounds = [LoopRound(0, 0, 0, ann.jf())]
    pairs = gt.shape[0] * len(ann.objects)
    budget = max(1, math.ceil(cfg.budget * pairs))
    per_round = [budget // cfg.rounds + (r < budget % cfg.rounds) for r in range(cfg.rounds)]
    for r, k in enumerate(per_round, 1):
        for frame, obj in ann.pick(strategy, k):
            ann.inspected.add((frame, obj))
            ann.log.record_visit(frame, obj)
            if ann.click(frame, obj):
                ann.corrected += 1
            else:
                ann.queue.accepted(frame, obj)
        ann.track()
        rounds.append(LoopRound(r, len(ann.inspected), ann.corrected, ann.jf()))
    return LoopResult(strategy, gt.shape[0], ann.objects, budget, tuple(rounds), ann.log.stats())


def first_pass_signals(
    session, gt_labels, config: LoopConfig | None = None
) -> list[tuple[ObjectSignals, float]]:
    """After the initial annotation (step 1 of the loop): each unprompted pair's signals and true IoU.

    What the review queue sees when review starts, paired with what it should find:
    the data for fitting :class:`~napari_sam2.review.score.SuspicionWeights`
    (``benchmarks/fit_suspicion.py``).
    """
    ann = _initial_annotation(session, gt_labels, config or LoopConfig(), None)
    ious = iou_table(ann.labels, ann.gt, ann.objects)
    col = {obj: i for i, obj in enumerate(ann.objects)}
    return [
        (it.signals, float(ious[it.frame, col[it.obj_id]]))
        for it in ann.queue.ranked()
        if it.signals is not None and it.obj_id in col
    ]


def run_review_loop(
    model,
    frames,
    gt_labels,
    strategy: str = "guided",
    config: LoopConfig | None = None,
    weights: SuspicionWeights | None = None,
    **session_kw,
) -> LoopResult:
    """:func:`review_loop` on a new ``VideoSession(model, frames, **session_kw)``."""
    from ..engine.session import VideoSession  # torch loads only when a model is used

    with VideoSession(model, frames, **session_kw) as session:
        return review_loop(session, gt_labels, strategy, config, weights)
