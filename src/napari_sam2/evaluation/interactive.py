"""The SAM 2 paper's interactive evaluation protocols, simulated against ground truth.

A simulated annotator prompts a :class:`~napari_sam2.engine.session.VideoSession` the way
the SAM 2 paper (Ravi et al. 2024, arXiv:2408.00714) evaluates promptable video
segmentation and semi-supervised VOS, and the result is scored with DAVIS J&F
(:func:`napari_sam2.evaluation.metrics.jf_scores`):

* :func:`offline_protocol` -- repeated passes: clicks on the first frame where
  each object appears, then after every full propagation (both directions)
  clicks on each object's worst frame, up to ``max_frames_prompted`` frames.
* :func:`online_protocol` -- one forward pass that stops at every frame where
  an object's IoU drops below a threshold, corrects it with clicks and goes on.
* :func:`vos_protocol` -- semi-supervised VOS: one prompt (the ground-truth
  mask, its box, or 1/3/5 clicks) on each object's first frame, then forward.

Every click is :func:`~napari_sam2.evaluation.metrics.next_click`: the deepest point of
the larger error region, positive on a miss, negative on a false alarm. Clicks
are placed one at a time against the current prediction, as a person would.

All ground-truth objects are run together in one session (object id = label
value), and predictions are the session's label volume (each pixel goes to the
object with the highest positive logit): the volume the plugin writes, which
is both what gets scored and what the annotator looks at. Label volumes are
``(T, H, W)`` integer arrays, 0 background; coordinates are ``(row, col)``.

The ``*_protocol`` functions take any session-like object (``num_frames``,
``frame_shape``, ``add_points``, ``add_box``, ``add_mask``, ``propagate``,
``segment``); :func:`run_offline`, :func:`run_online` and :func:`run_vos`
build a :class:`VideoSession` from a model and frames.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError
from .metrics import jaccard, jf_scores, next_click

__all__ = [
    "Prompt",
    "ProtocolResult",
    "ProtocolStep",
    "first_frames",
    "iou_table",
    "mask_box",
    "object_ids",
    "objects_below",
    "offline_protocol",
    "online_protocol",
    "run_offline",
    "run_online",
    "run_vos",
    "vos_protocol",
    "worst_frame",
]

VOS_PROMPTS = ("mask", "box", "clicks")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Prompt:
    """One prompted (frame, object): ``kind`` is "clicks", "box" or "mask".

    ``clicks`` counts the clicks placed there (0 for a box or a mask).
    """

    frame: int
    obj_id: int
    kind: str
    clicks: int


@dataclass(frozen=True)
class ProtocolStep:
    """The scores after one step of a protocol.

    Attributes:
        prompted_frames: the most frames any one object has been prompted on so
            far (the paper's "number of annotated frames"; the pass number in
            the offline protocol).
        clicks: the clicks placed so far, all objects together.
        J, F, JF: DAVIS means over objects (:class:`~napari_sam2.evaluation.metrics.JFScores`
            ``J_mean``, ``F_mean``, ``JF_mean``).
    """

    prompted_frames: int
    clicks: int
    J: float
    F: float
    JF: float


@dataclass(frozen=True)
class ProtocolResult:
    """A protocol's steps (one row per pass; one row for online and VOS) and prompts.

    Attributes:
        protocol: "offline", "online", "vos-mask", "vos-box" or "vos-<n>-clicks".
        objects: the ground-truth labels, which are also the session's object ids.
        steps: the scores after each step, in order.
        prompts: every prompt placed, in order.
    """

    protocol: str
    objects: tuple[int, ...]
    steps: tuple[ProtocolStep, ...]
    prompts: tuple[Prompt, ...]

    @property
    def final(self) -> ProtocolStep:
        """The last step: the protocol's end result."""
        return self.steps[-1]

    def as_dict(self) -> dict:
        """Plain ``dict`` (JSON-ready) of everything."""
        return {
            "protocol": self.protocol,
            "objects": list(self.objects),
            "steps": [asdict(s) for s in self.steps],
            "prompts": [asdict(p) for p in self.prompts],
        }


# --------------------------------------------------------------------------- pure helpers


def object_ids(gt_labels: np.ndarray) -> tuple[int, ...]:
    """The nonzero labels of a ``(T, H, W)`` volume, ascending."""
    return tuple(int(x) for x in np.unique(gt_labels) if x != 0)


def first_frames(gt_labels: np.ndarray) -> dict[int, int]:
    """``{label: first frame where it has pixels}`` of a ``(T, H, W)`` volume, by label."""
    # A label's bounding box starts on its first frame along axis 0.
    boxes = ndimage.find_objects(np.asarray(gt_labels))
    return {label: box[0].start for label, box in enumerate(boxes, 1) if box is not None}


def iou_table(pred_labels: np.ndarray, gt_labels: np.ndarray, objects) -> np.ndarray:
    """IoU of every object in every frame: ``(T, N)`` float, for ``(T, H, W)`` volumes.

    Object ``objects[i]`` is label ``objects[i]`` in both volumes; IoU is 1
    where the object is absent from both (as :func:`~napari_sam2.evaluation.metrics.jaccard`).
    """
    ids = np.asarray(objects, dtype=np.int64)
    top = int(ids.max()) + 1 if ids.size else 1
    out = np.ones((len(gt_labels), len(ids)))
    for t, (pred, gt) in enumerate(zip(pred_labels, gt_labels, strict=True)):
        # One bincount per frame scores all objects at once; other labels count as 0.
        pred = np.where((pred > 0) & (pred < top), pred, 0).ravel()
        gt = np.where((gt > 0) & (gt < top), gt, 0).ravel()
        inter = np.bincount(gt[pred == gt], minlength=top)[ids]
        union = np.bincount(pred, minlength=top)[ids] + np.bincount(gt, minlength=top)[ids] - inter
        out[t] = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return out


def worst_frame(ious: np.ndarray, exclude=()) -> int | None:
    """The frame of lowest IoU in ``ious`` (T,), skipping ``exclude``; earliest on ties.

    ``None`` when every remaining frame is perfect (IoU 1) or none remains.
    """
    candidates = np.asarray(ious, dtype=float).copy()
    candidates[list(exclude)] = np.inf
    t = int(np.argmin(candidates))
    return t if candidates[t] < 1.0 else None


def objects_below(pred_frame: np.ndarray, gt_frame: np.ndarray, objects, threshold: float):
    """The objects whose IoU on one ``(H, W)`` frame is below ``threshold``, as a list."""
    ious = iou_table(pred_frame[None], gt_frame[None], objects)[0]
    return [obj for obj, iou in zip(objects, ious, strict=True) if iou < threshold]


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box ``(row0, col0, row1, col1)`` of a non-empty ``(H, W)`` mask, inclusive."""
    rows = np.flatnonzero(np.any(mask, axis=1))
    cols = np.flatnonzero(np.any(mask, axis=0))
    if rows.size == 0:
        raise InputError("mask: empty, it has no box")
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


def _step(labels: np.ndarray, gt: np.ndarray, prompts, skip_first_last=False) -> ProtocolStep:
    """Score a ``(T, H, W)`` prediction and count the prompts placed so far."""
    scores = jf_scores(labels, gt, skip_first_last=skip_first_last)
    frames: dict[int, set[int]] = {}
    for p in prompts:
        frames.setdefault(p.obj_id, set()).add(p.frame)
    return ProtocolStep(
        prompted_frames=max((len(f) for f in frames.values()), default=0),
        clicks=sum(p.clicks for p in prompts),
        J=scores.J_mean,
        F=scores.F_mean,
        JF=scores.JF_mean,
    )


# --------------------------------------------------------------------------- annotator


def _click(session, frame, obj_id, gt_mask, current, max_clicks, good_iou=None):
    """Corrective clicks on one object, one at a time (each sees the last's result).

    ``current`` is the frame's ``(H, W)`` label image before the clicks. Stops
    after ``max_clicks``, when nothing is wrong, or when IoU reaches ``good_iou``.
    Returns ``(clicks placed, the frame's label image after them)``.
    """
    n = 0
    while n < max_clicks:
        pred = current == obj_id
        if good_iou is not None and jaccard(pred, gt_mask) >= good_iou:
            break
        click = next_click(pred, gt_mask)
        if click is None:
            break
        row, col, label = click
        # clear=False: each click refines the object's earlier clicks on this frame.
        result = session.add_points(frame, obj_id, [(row, col)], [label], clear=False)
        current = result.label_image()
        n += 1
    return n, current


def _annotate(session, targets, gt, labels, prompts, max_clicks, good_iou=None) -> None:
    """Click each ``(object, frame)`` of ``targets`` (:func:`_click`).

    Updates the ``(T, H, W)`` ``labels`` and appends to ``prompts`` in place.
    """
    for obj, frame in targets:
        n, labels[frame] = _click(
            session, frame, obj, gt[frame] == obj, labels[frame], max_clicks, good_iou
        )
        if n:
            prompts.append(Prompt(frame, obj, "clicks", n))


def _propagate_until(session, start: int, labels: np.ndarray, stop: Callable[[int], object]):
    """Propagate forward from ``start`` into ``labels`` until ``stop(frame)`` after ``start``.

    Returns the frame it stopped at, or ``None`` at the end of the video.
    """
    with closing(session.propagate(start)) as results:
        for result in results:
            labels[result.frame] = result.label_image()
            if result.frame != start and stop(result.frame):
                return result.frame
    return None


def _check_gt(session, gt_labels) -> np.ndarray:
    gt = np.asarray(gt_labels)
    if not np.issubdtype(gt.dtype, np.integer) or gt.ndim != 3:
        raise InputError(
            f"gt_labels: expected an integer (T, H, W) volume, got {gt.dtype} {gt.shape}"
        )
    expected = (session.num_frames, *session.frame_shape)
    if gt.shape != expected:
        raise InputError(f"gt_labels: shape {gt.shape} does not match the frames' {expected}")
    if gt.min() < 0 or not gt.any():
        raise InputError("gt_labels: needs labels >= 0 and at least one object")
    return gt


def _check_count(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- offline


def offline_protocol(
    session, gt_labels, max_frames_prompted: int = 8, clicks_per_frame: int = 3
) -> ProtocolResult:
    """The paper's offline protocol: full passes, each correcting every object's worst frame.

    Pass 1 clicks on the first frame where each object appears; every pass then
    propagates through the whole video (``segment("both")``: forward from the
    earliest prompted frame, then backward from it; other prompted frames
    condition both) and records J&F. The next pass picks, per object, the
    not-yet-prompted frame of lowest IoU and clicks there, until the objects have
    ``max_frames_prompted`` frames, no error left or no frame left. One row per pass.

    Args:
        session: a fresh :class:`VideoSession` (or alike) over the frames.
        gt_labels: ``(T, H, W)`` ground truth matching the session's frames.
        max_frames_prompted: frames prompted per object at most (passes).
        clicks_per_frame: clicks per prompted frame at most.
    """
    gt = _check_gt(session, gt_labels)
    max_frames_prompted = _check_count("max_frames_prompted", max_frames_prompted)
    clicks_per_frame = _check_count("clicks_per_frame", clicks_per_frame)
    objects = object_ids(gt)
    labels = np.zeros(gt.shape, np.int32)
    prompts: list[Prompt] = []
    steps: list[ProtocolStep] = []
    targets = first_frames(gt)
    while targets:
        _annotate(session, targets.items(), gt, labels, prompts, clicks_per_frame)
        labels = session.segment("both")
        steps.append(_step(labels, gt, prompts))
        if len(steps) < max_frames_prompted:
            targets = _worst_frames(labels, gt, objects, prompts)
        else:
            targets = {}
    return ProtocolResult("offline", objects, tuple(steps), tuple(prompts))


def _worst_frames(labels, gt, objects, prompts) -> dict[int, int]:
    """``{object: its worst frame not yet prompted}`` for objects with errors left."""
    ious = iou_table(labels, gt, objects)
    targets = {}
    for i, obj in enumerate(objects):
        frame = worst_frame(ious[:, i], exclude=[p.frame for p in prompts if p.obj_id == obj])
        if frame is not None:
            targets[obj] = frame
    return targets


# --------------------------------------------------------------------------- online


def online_protocol(
    session,
    gt_labels,
    iou_threshold: float = 0.75,
    max_clicks_per_frame: int = 3,
    max_frames_prompted: int | None = None,
) -> ProtocolResult:
    """The paper's online protocol: one forward pass, corrected where IoU drops.

    From the first frame with an object, tracking runs forward and stops at
    every frame where an object's IoU is below ``iou_threshold`` (an object not
    tracked yet has IoU 0 where it appears); each such object gets clicks, one
    at a time, until its IoU reaches the threshold or ``max_clicks_per_frame``
    clicks; tracking then resumes from that frame. One row: the final scores.

    Args:
        session: a fresh :class:`VideoSession` (or alike) over the frames.
        gt_labels: ``(T, H, W)`` ground truth matching the session's frames.
        iou_threshold: IoU below which a frame gets corrected.
        max_clicks_per_frame: clicks per corrected frame and object at most.
        max_frames_prompted: frames corrected per object at most (None: no cap);
            an object at the cap no longer stops the pass.
    """
    gt = _check_gt(session, gt_labels)
    if not 0.0 <= iou_threshold <= 1.0:
        raise InputError(f"iou_threshold: expected a value in [0, 1], got {iou_threshold}")
    max_clicks_per_frame = _check_count("max_clicks_per_frame", max_clicks_per_frame)
    if max_frames_prompted is not None:
        max_frames_prompted = _check_count("max_frames_prompted", max_frames_prompted)
    objects = object_ids(gt)
    labels = np.zeros(gt.shape, np.int32)
    prompts: list[Prompt] = []

    def to_fix(frame: int) -> list[int]:
        below = objects_below(labels[frame], gt[frame], objects, iou_threshold)
        if max_frames_prompted is None:
            return below
        done = [p.obj_id for p in prompts]
        return [obj for obj in below if done.count(obj) < max_frames_prompted]

    frame = min(first_frames(gt).values())
    while frame is not None:
        targets = [(obj, frame) for obj in to_fix(frame)]
        _annotate(session, targets, gt, labels, prompts, max_clicks_per_frame, iou_threshold)
        # With no prompt at all (threshold 0) there is nothing to track.
        frame = _propagate_until(session, frame, labels, to_fix) if prompts else None
    steps = (_step(labels, gt, prompts),)
    return ProtocolResult("online", objects, steps, tuple(prompts))


# --------------------------------------------------------------------------- VOS


def vos_protocol(session, gt_labels, prompt: str = "mask", n_clicks: int = 1) -> ProtocolResult:
    """Semi-supervised VOS: each object prompted once on its first frame, then forward.

    The prompt comes from the ground truth of the first frame where the object
    appears: the mask itself (``"mask"``), its tight box (``"box"``) or
    ``n_clicks`` clicks (``"clicks"``, one at a time). Tracking runs forward
    and pauses where a new object appears, to prompt it there. Scored as VOS
    is: J&F without the first and last frame (needs ``T >= 3``). One row.

    Args:
        session: a fresh :class:`VideoSession` (or alike) over the frames.
        gt_labels: ``(T, H, W)`` ground truth matching the session's frames.
        prompt: "mask", "box" or "clicks".
        n_clicks: clicks per object with ``prompt="clicks"`` (paper: 1, 3, 5).
    """
    gt = _check_gt(session, gt_labels)
    if prompt not in VOS_PROMPTS:
        raise InputError(f"prompt: expected one of {VOS_PROMPTS}, got {prompt!r}")
    n_clicks = _check_count("n_clicks", n_clicks)
    if gt.shape[0] < 3:
        raise InputError(
            f"gt_labels: VOS scoring skips the first and last frame; got {gt.shape[0]} frames"
        )
    objects = object_ids(gt)
    labels = np.zeros(gt.shape, np.int32)
    prompts: list[Prompt] = []
    first = first_frames(gt)
    starts = set(first.values())
    frame = min(starts)
    while frame is not None:
        for obj in (o for o, t in first.items() if t == frame):
            labels[frame], p = _vos_prompt(
                session, frame, obj, gt[frame] == obj, labels[frame], prompt, n_clicks
            )
            prompts.append(p)
        frame = _propagate_until(session, frame, labels, lambda f: f in starts)
    name = f"vos-{n_clicks}-clicks" if prompt == "clicks" else f"vos-{prompt}"
    steps = (_step(labels, gt, prompts, skip_first_last=True),)
    return ProtocolResult(name, objects, steps, tuple(prompts))


def _vos_prompt(session, frame, obj, gt_mask, current, prompt, n_clicks):
    """Prompt one object from its ground truth; returns (frame label image, Prompt)."""
    if prompt == "mask":
        current = session.add_mask(frame, obj, gt_mask).label_image()
        return current, Prompt(frame, obj, "mask", 0)
    if prompt == "box":
        current = session.add_box(frame, obj, mask_box(gt_mask)).label_image()
        return current, Prompt(frame, obj, "box", 0)
    n, current = _click(session, frame, obj, gt_mask, current, n_clicks)
    return current, Prompt(frame, obj, "clicks", n)


# --------------------------------------------------------------------------- with a model


def _session(model, frames, session_kw):
    from ..engine.session import VideoSession  # torch loads only when a model is used

    return VideoSession(model, frames, **session_kw)


def run_offline(
    model, frames, gt_labels, max_frames_prompted: int = 8, clicks_per_frame: int = 3, **session_kw
) -> ProtocolResult:
    """:func:`offline_protocol` on a new ``VideoSession(model, frames, **session_kw)``."""
    with _session(model, frames, session_kw) as session:
        return offline_protocol(session, gt_labels, max_frames_prompted, clicks_per_frame)


def run_online(
    model,
    frames,
    gt_labels,
    iou_threshold: float = 0.75,
    max_clicks_per_frame: int = 3,
    max_frames_prompted: int | None = None,
    **session_kw,
) -> ProtocolResult:
    """:func:`online_protocol` on a new ``VideoSession(model, frames, **session_kw)``."""
    with _session(model, frames, session_kw) as session:
        return online_protocol(
            session, gt_labels, iou_threshold, max_clicks_per_frame, max_frames_prompted
        )


def run_vos(
    model, frames, gt_labels, prompt: str = "mask", n_clicks: int = 1, **session_kw
) -> ProtocolResult:
    """:func:`vos_protocol` on a new ``VideoSession(model, frames, **session_kw)``."""
    with _session(model, frames, session_kw) as session:
        return vos_protocol(session, gt_labels, prompt, n_clicks)
