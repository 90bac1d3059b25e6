"""Automatic tracking of every cell: ``track_all``.

1. **Seed**: on ``start_frame``, the user's prompts (points or masks, one
   object each) and every new object the :class:`MaskGenerator` finds.
2. **Propagate**: all live tracks together, frame by frame, through one
   :class:`~napari_sam2.engine.session.VideoSession` (objects with the same memory
   layout run as one batch, whatever frame they started on).
3. **Decide** on each frame, by the rules of :mod:`.decisions`: occupancy,
   split divisions, ends; every ``detect_every`` frames and whenever the
   labelled area drops, run the generator again: uncovered masks become new
   tracks, or the second daughter of a touching track that shrank. A track
   whose area falls below ``shrink_ratio`` of its recent mean, or rises above
   its inverse, also triggers detection on that frame (a division under way).

Tracking runs forward from ``start_frame``; earlier frames stay empty.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..engine.session import VideoSession
from ..errors import InputError
from ..modeling.sam2 import Sam2Model
from . import decisions
from .decisions import TrackConfig
from .mask_generator import MaskGenerator


@dataclass
class TrackingResult:
    """Output of :func:`track_all`.

    labels: (T, H, W) int32 track ids, 0 background.
    lineage: {track_id: (start, end, parent)}: first and last frame with
        pixels, and the mother's id (0 for none).
    scores: one dict per frame, {track_id: object score logit} of the tracks
        propagated on that frame (> 0: judged present).
    """

    labels: np.ndarray
    lineage: dict[int, tuple[int, int, int]]
    scores: list[dict[int, float]] = field(default_factory=list)

    def lineage_rows(self) -> np.ndarray:
        """(N, 4) int64 rows (label, first, last, parent), sorted by label."""
        rows = [(k, *v) for k, v in sorted(self.lineage.items())]
        return np.asarray(rows, np.int64).reshape(-1, 4)

    def divisions(self) -> dict[int, list[int]]:
        """{mother: [daughters]} for every mother with daughters."""
        out: dict[int, list[int]] = {}
        for tid, (_, _, parent) in sorted(self.lineage.items()):
            if parent:
                out.setdefault(parent, []).append(tid)
        return out


def counts_text(tracks: int, divisions: int) -> str:
    """What a run found, as its summaries say it: ``"12 tracks, 1 division"``."""
    return (
        f"{tracks} track{'' if tracks == 1 else 's'}, "
        f"{divisions} division{'' if divisions == 1 else 's'}"
    )


class TrackedFrame(NamedTuple):
    """One final frame of :func:`iter_tracking`.

    ``labels``: (H, W) int32 track ids after the rules (occupancy, divisions,
    ends); ``propagated``: the engine's
    :class:`~napari_sam2.engine.frame_result.FrameResult` of the tracks carried
    onto this frame before the rules (their scores feed the review queue), or
    None (the start frame, or no live track).
    """

    frame: int
    labels: np.ndarray
    propagated: object = None


@dataclass
class _Track:
    tid: int
    start: int
    parent: int = 0
    last_seen: int = -1
    missing: int = 0
    areas: list[int] = field(default_factory=list)
    aspects: list[float] = field(default_factory=list)  # major/minor axis ratio per frame
    signals: list[float] = field(default_factory=list)  # mean signal over the mask per frame

    @classmethod
    def new(
        cls, tid: int, frame: int, mask: np.ndarray, signal: np.ndarray, parent: int = 0
    ) -> _Track:
        """A track first seen on ``frame`` with ``mask`` (H, W) bool; ``signal``: the
        frame's :func:`~.decisions.signal_image`."""
        track = cls(tid, frame, parent, frame, 0)
        track.record(mask, int(mask.sum()), decisions.mask_signal(signal, mask))
        return track

    def record(self, mask: np.ndarray, area: int, signal: float) -> None:
        """Append this frame's ``area`` (pixels), axis ratio and mean ``signal`` of ``mask``."""
        self.areas.append(area)
        self.aspects.append(decisions.mask_aspect(mask))
        self.signals.append(signal)


class _FrameData:
    """What the rules derive from one frame's pixels, each read or computed once:
    the raw frame, its :func:`~.decisions.signal_image`, and its smoothed image and
    peaks per :class:`~.peaks.PeakPrompts` (the peak division rule and the
    generator's clicks share them)."""

    def __init__(self, frame: int, raw: np.ndarray) -> None:
        self.frame, self.raw = frame, raw
        self._signal: np.ndarray | None = None
        self._peaks: dict = {}  # PeakPrompts -> (smoothed frame, peaks)

    @property
    def signal(self) -> np.ndarray:
        if self._signal is None:
            self._signal = decisions.signal_image(self.raw)
        return self._signal

    def peaks(self, finder) -> tuple[np.ndarray, np.ndarray]:
        """(smoothed frame, its (N, 2) peaks) by ``finder``."""
        if finder not in self._peaks:
            smooth = finder.smooth(self.raw)
            self._peaks[finder] = (smooth, finder.find_smoothed(smooth))
        return self._peaks[finder]


class _Tracker:
    """The state of one run: live tracks, the lineage and the label volume."""

    def __init__(self, session: VideoSession, generator: MaskGenerator, cfg: TrackConfig, labels):
        self.session, self.generator, self.cfg = session, generator, cfg
        self.labels = labels
        self.live: dict[int, _Track] = {}
        self.lineage: dict[int, list[int]] = {}
        self.next_id = 1
        self.coverage_peak = 0
        self.last_detect = -1
        self.propagated = None  # the last frame's FrameResult before the rules
        self._data: _FrameData | None = None  # the current frame's: see _frame

    # -- track bookkeeping -----------------------------------------------------

    def start(self, frame: int, mask: np.ndarray, parent: int = 0) -> int:
        tid = self.next_id
        self.next_id += 1
        self.session.add_mask(frame, tid, mask)
        self.live[tid] = _Track.new(tid, frame, mask, self._frame(frame).signal, parent)
        self.lineage[tid] = [frame, frame, parent]
        self.labels[frame][mask] = tid
        return tid

    def end(self, tid: int) -> None:
        track = self.live.pop(tid)
        self.lineage[tid][1] = track.last_seen
        self.session.remove_object(tid)

    def divide(self, frame: int, mother: int, first: np.ndarray, second: np.ndarray) -> None:
        """End ``mother`` on frame - 1 and start two daughters on ``frame``."""
        track = self.live[mother]
        track.last_seen = frame - 1
        self.labels[frame][self.labels[frame] == mother] = 0
        self.end(mother)
        for mask in (first, second):
            self.start(frame, mask & (self.labels[frame] == 0), parent=mother)

    def release(self, frame: int, tid: int, mask: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Track ``tid`` keeps only ``keep`` of its ``mask`` on ``frame``: the rest is
        unlabelled (detection may start a cell there) and the track is re-prompted
        with ``keep``, so its memory follows one cell. Returns ``keep``."""
        self.labels[frame][mask & ~keep] = 0
        self.session.add_mask(frame, tid, keep)
        return keep

    # -- per frame -------------------------------------------------------------

    def seed(self, frame: int, points, masks) -> None:
        hw = self.session.frame_shape
        for mask in masks or ():
            m = np.asarray(mask)
            if m.shape != hw:
                raise InputError(f"masks: expected shape {hw} (the frame's), got {m.shape}")
            self.start(frame, m.astype(bool) & (self.labels[frame] == 0))
        for point in points or ():
            tid = self.next_id
            result = self.session.add_points(frame, tid, [point], [1])
            self.next_id += 1
            mine = result.object_mask(result.obj_ids.index(tid))
            mine &= self.labels[frame] == 0
            self.live[tid] = _Track.new(tid, frame, mine, self._frame(frame).signal)
            self.lineage[tid] = [frame, frame, 0]
            self.labels[frame][mine] = tid
        self.detect(frame)

    def _may_divide(self, track: _Track, frame: int, last: int, signal_now: float) -> bool:
        """Whether any division rule may end ``track`` on ``frame``, given its mean
        ``signal_now`` there; its frames before this one are its records up to
        index ``last`` (exclusive) (see :func:`decisions.may_divide`)."""
        history = slice(max(last - self.cfg.history, 0), last)
        return decisions.may_divide(
            frame - track.start,
            track.aspects[history],
            track.signals[history],
            signal_now,
            self.cfg,
        )

    def _frame(self, frame: int) -> _FrameData:
        """``frame``'s pixels and what the rules derive from them (read once)."""
        if self._data is None or self._data.frame != frame:
            self._data = _FrameData(frame, self.session.source.raw(frame))
        return self._data

    def step(self, frame: int) -> dict[int, float]:
        """Propagate the live tracks onto ``frame`` and apply the rules."""
        scores: dict[int, float] = {}
        self.propagated = None
        if self.live:
            result = next(iter(self.session.propagate(start_frame=frame, max_frames=1)))
            self.propagated = result
            scores = {int(i): float(s) for i, s in zip(result.obj_ids, result.object_scores)}
            self.labels[frame] = result.label_image(present_only=True)  # occupancy
        cfg = self.cfg
        changed = False  # a track shrank or grew sharply: a division may be under way
        for tid in list(self.live):
            track = self.live[tid]
            mask = self.labels[frame] == tid
            area = int(mask.sum())
            if area < max(cfg.min_area, 1):
                self.labels[frame][mask] = 0
                track.missing += 1
                if track.missing >= cfg.end_after:
                    self.end(tid)
                continue
            track.missing = 0
            recent = track.areas[-cfg.history :]
            recent_area = float(np.mean(recent))
            signal = self._frame(frame).signal
            signal_now = decisions.mask_signal(signal, mask)
            may_divide = self._may_divide(track, frame, len(track.areas), signal_now)
            pair = decisions.split_daughters(mask, recent_area, cfg) if cfg.divisions else None
            if pair is not None and not may_divide:
                # Two cells under one track, not a mitosis: it keeps the larger piece.
                mask = self.release(frame, tid, mask, pair[0])
                area, pair = int(mask.sum()), None
                signal_now = decisions.mask_signal(signal, mask)
            elif may_divide:
                if pair is None and cfg.split_peaks is not None:
                    smooth, peaks = self._frame(frame).peaks(cfg.split_peaks)
                    pair = decisions.peak_daughters(mask, smooth, peaks, recent_area, cfg)
                if pair is None:
                    pair = decisions.shape_daughters(mask, recent_area, cfg)
            if pair is not None:
                self.divide(frame, tid, *pair)
                continue
            track.last_seen = frame
            track.record(mask, area, signal_now)
            ratio = cfg.shrink_ratio
            changed |= decisions.shrunk(area, recent, ratio) or area * ratio > np.mean(recent)
        coverage = int((self.labels[frame] > 0).sum())
        self.coverage_peak = max(self.coverage_peak, coverage)
        dropped = coverage < (1.0 - cfg.coverage_drop) * self.coverage_peak
        if dropped or changed or frame - self.last_detect >= cfg.detect_every:
            self.detect(frame)
        return scores

    def detect(self, frame: int) -> None:
        """Run the generator on ``frame``; start new tracks and appearance divisions."""
        cfg = self.cfg
        source = self.session.source
        # The stack's intensity window, so detection sees frames as tracking does.
        intensity = getattr(source, "intensity", None)
        limits = None if intensity is None or intensity.is_rgb8 else intensity.limits
        clicks = None
        if cfg.generator.peaks is not None:  # found once per frame (shared with divisions)
            clicks = self._frame(frame).peaks(cfg.generator.peaks)[1]
        raw = self._frame(frame).raw
        found = self.generator.generate(raw, contrast_limits=limits, clicks=clicks)
        order = np.argsort(-found.predicted_iou, kind="stable")
        labels = self.labels[frame]
        # Tracks seen on this frame may divide (none when cells do not divide).
        seen = [
            t
            for t, tr in self.live.items()
            if tr.last_seen == frame
            and self._may_divide(tr, frame, len(tr.areas) - 1, tr.signals[-1])
        ]
        shrunk = {
            tid
            for tid in seen
            if len(areas := self.live[tid].areas) > 1
            and decisions.shrunk(areas[-1], areas[-1 - cfg.history : -1], cfg.shrink_ratio)
        }
        candidates = found.masks[order]
        for tid in seen:
            track = self.live[tid]
            recent = float(np.mean(track.areas[-1 - cfg.history : -1] or track.areas))
            pair = decisions.contained_daughters(candidates, labels == tid, recent, cfg)
            if pair is not None:
                shrunk.discard(tid)
                self.divide(frame, tid, *pair)
        for mask in decisions.new_objects(candidates, labels, cfg):
            mother = decisions.division_mother(mask, labels, shrunk, cfg.contact_distance)
            if mother is not None:
                shrunk.discard(mother)
                self.divide(frame, mother, labels == mother, mask)
            else:
                self.start(frame, mask)
        self.coverage_peak = int((self.labels[frame] > 0).sum())
        self.last_detect = frame

    def finish(self) -> dict[int, tuple[int, int, int]]:
        for tid in list(self.live):
            self.lineage[tid][1] = self.live[tid].last_seen
        return _trim_lineage(self.labels, self.lineage)


def _trim_lineage(labels: np.ndarray, lineage: dict[int, list[int]]):
    """Lineage with start/end set to the frames where each id has pixels; empty ids dropped."""
    present: dict[int, list[int]] = {}
    for t in range(labels.shape[0]):
        for tid in np.unique(labels[t]):
            if tid:
                present.setdefault(int(tid), []).append(t)
    out = {}
    for tid, (_, _, parent) in lineage.items():
        if tid in present:
            frames = present[tid]
            out[tid] = (frames[0], frames[-1], parent if parent in present else 0)
    return out


def track_all(
    model: Sam2Model,
    frames,
    config: TrackConfig | None = None,
    *,
    start_frame: int = 0,
    points: Sequence[tuple[float, float]] | None = None,
    masks: Sequence[np.ndarray] | None = None,
    channel_axis: int | None = None,
    contrast_limits=None,
    progress: Callable[[int, int], None] | None = None,
    labels_out=None,
    **session_kwargs,
) -> TrackingResult:
    """Find, track and link every cell of a time-lapse.

    Args:
        model: a loaded SAM 2 model.
        frames: (T, H, W) or (T, H, W, C) array-like, any dtype.
        config: a :class:`TrackConfig` (rules and generator settings).
        start_frame: frame where seeding happens; tracking runs forward from it.
        points: user clicks (row, col) on ``start_frame``, one object each.
        masks: user masks (H, W) on ``start_frame``, one object each; they
            come before generated objects (which must not overlap them).
        channel_axis, contrast_limits: as for :class:`VideoSession`.
        progress: called as ``progress(done, total)`` after every frame.
        labels_out: optional (T, H, W) int32 array to write the labels into
            (e.g. a memory-mapped file, so RAM does not grow with T); zeros
            outside the tracked frames are expected.
        session_kwargs: passed to :class:`VideoSession` (e.g. ``dtype``). By
            default ``spill=False``: tracking only runs forward, so memories
            older than the model's window are never read again and nothing is
            kept on disk; RAM per object is bounded by that window.

    Returns:
        :class:`TrackingResult`.
    """
    cfg = config or TrackConfig()
    session_kwargs.setdefault("spill", False)
    session = VideoSession(
        model, frames, channel_axis=channel_axis, contrast_limits=contrast_limits, **session_kwargs
    )
    try:
        generator = MaskGenerator(model, cfg.generator)
        return run_tracking(
            session, generator, cfg, start_frame, points, masks, progress, labels_out
        )
    finally:
        session.close()


def run_tracking(
    session,
    generator,
    cfg: TrackConfig,
    start_frame=0,
    points=None,
    masks=None,
    progress=None,
    labels_out=None,
) -> TrackingResult:
    """The loop of :func:`track_all` on a given session and generator.

    ``session`` needs the :class:`VideoSession` methods ``add_mask``,
    ``add_points``, ``remove_object``, ``propagate`` and the attributes
    ``num_frames``, ``frame_shape``, ``source`` (``raw``, ``check_index``);
    ``generator`` a ``generate(frame, contrast_limits=...)`` returning
    :class:`GeneratedMasks`.
    """
    steps = iter_tracking(session, generator, cfg, start_frame, points, masks, labels_out)
    total = None
    while True:
        try:
            frame = next(steps).frame
        except StopIteration as stop:
            return stop.value
        if total is None:
            start, total = frame, session.num_frames - frame
        if progress:
            progress(frame - start + 1, total)


def iter_tracking(
    session, generator, cfg: TrackConfig, start_frame=0, points=None, masks=None, labels_out=None
) -> Generator[TrackedFrame, None, TrackingResult]:
    """:func:`run_tracking` step by step: yields a :class:`TrackedFrame` (the
    frame, its final labels, the engine's result) for the start frame and each
    later frame; returns the
    :class:`TrackingResult` (``StopIteration.value``; ``yield from`` gives it).
    Closing the generator early stops tracking after the frame yielded last."""
    start = session.source.check_index(start_frame, "start_frame")
    shape = (session.num_frames, *session.frame_shape)
    if labels_out is None:
        labels = np.zeros(shape, np.int32)
    else:
        labels = labels_out
        if tuple(labels.shape) != shape or np.dtype(labels.dtype) != np.int32:
            raise InputError(f"labels_out: expected int32 of shape {shape}, got {labels.shape}")
    tracker = _Tracker(session, generator, cfg, labels)
    tracker.seed(start, points, masks)
    all_scores: list[dict[int, float]] = [{} for _ in range(session.num_frames)]
    yield TrackedFrame(start, labels[start])
    for t in range(start + 1, session.num_frames):
        all_scores[t] = tracker.step(t)
        yield TrackedFrame(t, labels[t], tracker.propagated)
    return TrackingResult(labels, tracker.finish(), all_scores)
