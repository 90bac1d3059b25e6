"""The decisions of automatic tracking, as pure functions on masks (no model).

Rules (all areas in pixels of the frame, all masks (H, W) bool):

- **Occupancy.** Each pixel belongs to at most one track: the one whose
  logit is highest there, if that logit is > 0. Tracks whose object score is
  <= 0 (judged absent) take no pixels. Equal logits go to the track listed
  first (the older one). Applied by
  :meth:`FrameResult.label_image(present_only=True) <napari_sam2.video.FrameResult.label_image>`,
  which upsamples each track only where it can be > 0.
- **Split division.** A track whose (occupancy-resolved) mask falls into two
  or more 8-connected components, each at least
  ``max(min_area, split_min_fraction * recent_area)`` pixels, the smaller of
  the two largest at least ``sister_ratio`` of the larger, has divided: the
  mother ends on the previous frame and the two largest components start two
  daughter tracks with the mother as parent. Smaller fragments are dropped
  (a cell with a small fragment, e.g. a leak onto a neighbour, is no division).
  See :func:`split_daughters`.
- **Cover division.** When the generator finds two disjoint masks, each at
  least ``inside`` (0.8) within one track's mask and each at least the split
  floor above, that together cover at least ``cover_fraction`` of the track
  while neither alone covers more than ``cover_fraction`` of it, the track
  has divided into those two (touching daughters, which never split into
  components). See :func:`contained_daughters`.
- **Peak division.** Touching daughters often stay inside one propagated
  mask (a click on either returns both). A track at least ``division_min_age``
  frames old whose mask holds two intensity peaks (``split_peaks``, the two
  brightest inside it) with a dip between them (the lowest smoothed value on
  the segment joining them is at most ``1 - saddle_depth`` of the lower peak's
  height above the frame's median) has divided: a watershed of the smoothed
  image inside the mask, from the two peaks, gives the daughters, each at
  least the split floor above. Sisters look alike: the smaller daughter has
  at least ``sister_ratio`` of the larger one's area, and the dimmer peak at
  least ``sister_ratio`` of the brighter one's height (both above the median);
  two unlike halves are more often a cell with a lumpy texture, or two
  neighbours under one mask, than a division. See :func:`peak_daughters`.
- **Shape division.** A mitotic cell rounds up, then splits into two
  touching daughters that one propagated mask often covers as a peanut. A
  track (old enough and showing a mitotic cue, below) that is now elongated (major/minor
  axis ratio at least ``elongated_aspect``) while its area stayed within
  ``shrink_ratio`` of its recent mean (either way: a mask that grew onto a
  neighbour, or lost half its cell, is no division) has divided: a cut
  across its long axis through its centroid gives the daughters, which must
  pass the sister area ratio and the split floor. See :func:`shape_daughters`.
- **New cells.** A generator mask is new when its area lies in
  ``[min_area, max_area_fraction * H * W]`` and at most ``new_overlap`` of it
  is already labelled; its unlabelled pixels (largest component, at least
  ``min_area``) become the new object. Masks are taken best score first and
  never overlap each other. See :func:`new_objects`.
- **Appearance division.** A new object that lies within
  ``contact_distance`` background pixels of a track that shrank (area now below
  ``shrink_ratio`` times its mean over the last frames) is the second
  daughter of that track: the mother ends, its current mask becomes daughter
  one and the new object daughter two. When several shrunk tracks touch it,
  the one with the longest contact wins. See :func:`division_mother`.
- **Age.** No rule divides a track younger than ``division_min_age`` frames
  (counted from its first frame in the run); such a track that falls apart
  keeps its id.
- **Mitotic cue.** A division rule may only end a track that shows a sign of
  mitosis as it splits. Two cues, each on unless set to None; a track must
  show every cue that is on:

  - *dimming* (``dim_ratio``, on by default): the track's mean signal (the
    frame's intensity above its median, channels averaged, over the track's
    mask) on this frame is at most ``dim_ratio`` of its mean over its last
    ``history`` frames. A nucleus brightens as its chromatin condenses for
    mitosis, and each daughter holds half of it, so the signal under the
    mother's mask drops as it divides. A track that covers two cells, or a
    cell and a leak onto a neighbour, keeps its signal as it falls apart:
    that was the commonest false division (docs/tracking.md). Markers that do
    not condense (a cytoplasmic label) need ``dim_ratio=None`` and, say, the
    rounding cue.
  - *rounding* (``round_aspect``, off by default): the track's mean
    major/minor axis ratio over its last ``history`` frames is at most
    ``round_aspect`` (cells round up before they divide). A propagated mask
    is seldom as round as the cell under it, so this cue is weaker.

  See :func:`may_divide`.
- **Ends.** A track ends after ``end_after`` consecutive frames without
  pixels (negative object score, or all its pixels taken by others); its end
  frame is the last frame with pixels. A cell seen again later is a new
  track with a new id; ids are never reused or merged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from ..errors import InputError
from .mask_generator import GeneratorConfig
from .peaks import PeakPrompts, grey

_EIGHT = np.ones((3, 3), dtype=bool)


CLICKS = ("peaks", "grid")
CUES = ("dimming", "rounding")
# Chosen on 40 tuning clips (seeds 930000-930039; docs/tracking.md): a dividing
# track's signal fell to 0.54-0.69 of its recent mean (10th-75th percentile),
# that of a track falling apart without dividing stayed at 0.89-1.0.
_DIM_RATIO = 0.8
_ROUND_ASPECT = 1.3


def generator_for(clicks: str = "peaks") -> GeneratorConfig:
    """The generator settings Track all and Segment all use, by where they click.

    ``clicks="peaks"`` (the default): one click on each bright blob, the mask that
    click returns, kept above predicted IoU 0.5 and stability 0.7. On tuning
    clips (seeds 930000+, not the benchmark's) it found 90 % of the cells of
    the easy condition at 95 % precision, where the grid found 66 % at 50 %
    (benchmarks/NOTES.md). ``"grid"``: a 16 x 16 grid, all three masks per
    point, IoU 0.7 and stability 0.85, for images whose cells are not bright
    on dark.
    """
    if clicks == "peaks":
        return GeneratorConfig(
            points_per_side=16,
            pred_iou_thresh=0.5,
            stability_score_thresh=0.7,
            peaks=PeakPrompts(),
            best_mask_only=True,
        )
    if clicks == "grid":
        return GeneratorConfig(points_per_side=16, pred_iou_thresh=0.7, stability_score_thresh=0.85)
    raise InputError(f"clicks: must be one of {', '.join(CLICKS)}, got {clicks!r}")


def cue_settings(cue: str = "dimming") -> dict[str, float | None]:
    """The :class:`TrackConfig` fields of a mitotic cue (``replace(cfg, **...)``).

    ``"dimming"`` (the default; nuclear markers whose chromatin condenses in
    mitosis): the signal under a dividing track's mask drops. ``"rounding"``
    (other markers): a dividing track's mask was round (mean axis ratio at most
    1.3). See the module's mitotic cue rule.
    """
    if cue == "dimming":
        return {"dim_ratio": _DIM_RATIO, "round_aspect": None}
    if cue == "rounding":
        return {"dim_ratio": None, "round_aspect": _ROUND_ASPECT}
    raise InputError(f"division_cue: must be one of {', '.join(CUES)}, got {cue!r}")


@dataclass(frozen=True)
class TrackConfig:
    """Settings of :func:`~napari_sam2.tracking.track_all` (see the module's rules).

    detect_every: run the generator every this many frames (1: every frame).
    coverage_drop: also run it when the labelled area falls below
        ``1 - coverage_drop`` of its largest value since the last detection.
    end_after: frames without pixels before a track ends.
    min_area: smallest object or daughter, pixels.
    max_area_fraction: generator masks larger than this fraction of the frame
        are background or clusters, never cells.
    new_overlap: largest labelled fraction of a generator mask that is new.
    split_min_fraction: smallest daughter component, fraction of the mother's recent area.
    shrink_ratio: a track shrank when its area is below this times its recent mean.
    contact_distance: pixels between a new object and a shrunk track for a division.
    history: frames over which a track's recent (mean) area is taken.
    inside: smallest fraction of a generator mask inside a track for a cover division.
    cover_fraction: fraction of the track the two daughter masks must cover.
    divisions: False for cells that do not divide: no division rule applies (a
        mask that falls apart keeps its id; a new cell next to a shrunk track is
        a new track).
    split_peaks: how peaks are found for the peak division rule; None turns the rule off.
    saddle_depth: least relative dip between two peaks of a dividing track.
    division_min_age: frames a track must have lived (since it started, in this
        run) before any division rule may end it: a cell just seen, or just born,
        does not divide again at once, and a young track that covers two cells is
        far more often a seeding error than a mitosis.
    sister_ratio: least smaller/larger ratio of the daughters' areas and peak heights.
    dim_ratio: largest ratio of a track's signal now to its recent mean for a
        division (the dimming cue); None turns the cue off.
    round_aspect: largest recent mean major/minor axis ratio of a track that
        may divide (the rounding cue; 1 is a disc); None (the default) turns
        the cue off.
    elongated_aspect: least major/minor axis ratio of a track's mask for the
        shape rule (two touching daughters under one mask: about 2).
    generator: settings of the mask generator used for seeding and detection.
    """

    detect_every: int = 1
    coverage_drop: float = 0.1
    end_after: int = 2
    min_area: int = 20
    max_area_fraction: float = 0.2
    # 0.35, not 0.2: a cell a neighbour's mask bleeds into is still found (tuning clips:
    # easy TRA 0.890 -> 0.926, hard 0.584 -> 0.615; docs/tracking.md).
    new_overlap: float = 0.35
    split_min_fraction: float = 0.2
    shrink_ratio: float = 0.75
    contact_distance: int = 2
    history: int = 3
    inside: float = 0.8
    cover_fraction: float = 0.7
    divisions: bool = True
    split_peaks: PeakPrompts | None = field(default_factory=PeakPrompts)
    saddle_depth: float = 0.1
    division_min_age: int = 8
    sister_ratio: float = 0.5
    dim_ratio: float | None = _DIM_RATIO
    round_aspect: float | None = None
    elongated_aspect: float = 1.5
    generator: GeneratorConfig = field(default_factory=generator_for)

    def __post_init__(self) -> None:
        if not isinstance(self.divisions, bool):
            raise InputError(f"divisions: must be True or False, got {self.divisions!r}")
        for name in ("detect_every", "end_after", "history"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name}: must be a positive integer, got {value!r}")
        if self.split_peaks is not None and not isinstance(self.split_peaks, PeakPrompts):
            raise InputError(
                f"split_peaks: must be a PeakPrompts or None, got {self.split_peaks!r}"
            )
        for name in ("min_area", "contact_distance", "division_min_age"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise InputError(f"{name}: must be an integer >= 0, got {value!r}")
        for name in ("round_aspect", "elongated_aspect"):
            value = getattr(self, name)
            if value is None and name == "round_aspect":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1.0:
                raise InputError(f"{name}: must be a number >= 1 (an axis ratio), got {value!r}")
        for name in (
            "coverage_drop",
            "max_area_fraction",
            "new_overlap",
            "split_min_fraction",
            "shrink_ratio",
            "inside",
            "cover_fraction",
            "saddle_depth",
            "sister_ratio",
            "dim_ratio",
        ):
            value = getattr(self, name)
            if value is None and name == "dim_ratio":
                continue
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise InputError(f"{name}: must be in [0, 1], got {value!r}")


def components(mask: np.ndarray, min_area: int = 0) -> list[np.ndarray]:
    """8-connected components of ``mask`` with at least ``min_area`` pixels, largest first."""
    lab, n = ndimage.label(np.asarray(mask, bool), structure=_EIGHT)
    if n == 0:
        return []
    sizes = np.bincount(lab.ravel())[1:]
    order = np.argsort(-sizes, kind="stable")
    return [lab == i + 1 for i in order if sizes[i] >= max(min_area, 1)]


def split_daughters(
    mask: np.ndarray, recent_area: float, cfg: TrackConfig
) -> tuple[np.ndarray, np.ndarray] | None:
    """The two daughter masks if ``mask`` has split (see the module rules), else None."""
    floor = max(cfg.min_area, cfg.split_min_fraction * float(recent_area), 1)
    parts = components(mask, int(np.ceil(floor)))
    if len(parts) < 2:
        return None
    if parts[1].sum() < cfg.sister_ratio * parts[0].sum():  # a cell and a fragment
        return None
    return parts[0], parts[1]


def contained_daughters(
    candidates: np.ndarray, track_mask: np.ndarray, recent_area: float, cfg: TrackConfig
) -> tuple[np.ndarray, np.ndarray] | None:
    """Two daughter masks from generator masks (K, H, W, best first) that tile the
    track's mask (see the module rules), restricted to it; else None."""
    track_mask = np.asarray(track_mask, bool)
    area = int(track_mask.sum())
    if area == 0:
        return None
    floor = max(cfg.min_area, cfg.split_min_fraction * float(recent_area), 1)
    chosen: list[np.ndarray] = []
    used = np.zeros_like(track_mask)
    for cand in np.asarray(candidates, bool):
        size = int(cand.sum())
        inside = cand & track_mask
        n_in = int(inside.sum())
        if size == 0 or n_in < cfg.inside * size or n_in < floor:
            continue
        if n_in > cfg.cover_fraction * area:  # the whole cell again
            continue
        if (inside & used).sum() > 0.1 * n_in:
            continue
        chosen.append(inside & ~used)
        used |= inside
    if len(chosen) < 2:
        return None
    chosen.sort(key=lambda m: -int(m.sum()))
    a, b = chosen[0], chosen[1]
    if (a | b).sum() < cfg.cover_fraction * area:
        return None
    return a, b


def peak_daughters(
    track_mask: np.ndarray,
    smooth: np.ndarray,
    peaks: np.ndarray,
    recent_area: float,
    cfg: TrackConfig,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The two daughters of a track whose mask holds two separated peaks, else None.

    ``smooth``: (H, W) the frame smoothed as the peaks were found
    (:meth:`PeakPrompts.smooth`); ``peaks``: (N, 2) (row, col) peaks of the
    whole frame, brightest first. See the module's peak division rule.
    """
    track_mask = np.asarray(track_mask, bool)
    h, w = track_mask.shape
    rc = np.floor(np.asarray(peaks, np.float64)).astype(np.int64).reshape(-1, 2)
    rc = rc[(rc[:, 0] >= 0) & (rc[:, 0] < h) & (rc[:, 1] >= 0) & (rc[:, 1] < w)]
    inside = rc[track_mask[rc[:, 0], rc[:, 1]]]
    if len(inside) < 2:
        return None
    a, b = inside[0], inside[1]
    base = float(np.median(smooth))
    heights = sorted((float(smooth[a[0], a[1]]) - base, float(smooth[b[0], b[1]]) - base))
    lower = heights[0]
    if lower < cfg.sister_ratio * heights[1]:
        return None
    steps = int(np.abs(b - a).max()) + 1
    line = np.rint(np.linspace(a, b, steps)).astype(np.int64)
    saddle = float(smooth[line[:, 0], line[:, 1]].min()) - base
    if lower <= 0 or saddle > (1.0 - cfg.saddle_depth) * lower:
        return None
    markers = np.zeros((h, w), np.int32)
    markers[a[0], a[1]], markers[b[0], b[1]] = 1, 2
    basins = watershed(-smooth, markers, mask=track_mask)
    first, second = basins == 1, basins == 2
    floor = max(cfg.min_area, cfg.split_min_fraction * float(recent_area), 1)
    if first.sum() < second.sum():
        first, second = second, first
    small = int(second.sum())
    if small < floor or small < cfg.sister_ratio * int(first.sum()):
        return None
    return first, second


def _axes(rows: np.ndarray, cols: np.ndarray) -> tuple[float, np.ndarray]:
    """(major/minor axis ratio, unit (row, col) vector of the major axis) of pixels,
    from their second moments (at least 3 pixels)."""
    values, vectors = np.linalg.eigh(np.cov(np.stack([rows, cols]).astype(np.float64)))
    # a one-pixel-wide line has a minor variance ~ 0: its ratio is large, not infinite
    return float(np.sqrt(values[1] / max(values[0], 1.0 / 12.0))), vectors[:, 1]


def mask_aspect(mask: np.ndarray) -> float:
    """Major/minor axis ratio of a mask's pixels (from their second moments);
    1 for a disc, about 2 for two touching discs; NaN below 3 pixels."""
    rows, cols = np.nonzero(mask)
    return float("nan") if rows.size < 3 else _axes(rows, cols)[0]


def signal_image(image: np.ndarray) -> np.ndarray:
    """(H, W) float32: ``image`` (H, W[, C]; channels averaged) minus its median,
    the signal a cell adds above the background (arbitrary units)."""
    img = grey(image)
    return img - np.float32(np.median(img))


def mask_signal(signal: np.ndarray, mask: np.ndarray) -> float:
    """Mean of ``signal`` (H, W, from :func:`signal_image`) over ``mask``; NaN if empty."""
    values = signal[np.asarray(mask, bool)]
    return float(values.mean()) if values.size else float("nan")


def may_divide(
    age: int, recent_aspects, recent_signals, signal_now: float, cfg: TrackConfig
) -> bool:
    """Whether any division rule may end a track (the age and mitotic-cue rules).

    ``age``: frames since the track started in this run; ``recent_aspects``
    and ``recent_signals``: its mask's major/minor axis ratios
    (:func:`mask_aspect`) and mean signals (:func:`mask_signal`) on its last
    frames before this one (NaN entries are skipped); ``signal_now``: its
    mean signal on this frame.
    """
    if not cfg.divisions or age < cfg.division_min_age:
        return False
    if cfg.round_aspect is not None:
        aspects = [float(a) for a in recent_aspects if np.isfinite(a)]
        if not aspects or float(np.mean(aspects)) > cfg.round_aspect:
            return False
    if cfg.dim_ratio is not None:
        signals = [float(v) for v in recent_signals if np.isfinite(v)]
        before = float(np.mean(signals)) if signals else float("nan")
        # a track no brighter than the background has no signal to lose
        if not before > 0 or not signal_now <= cfg.dim_ratio * before:
            return False
    return True


def shape_daughters(
    track_mask: np.ndarray, recent_area: float, cfg: TrackConfig
) -> tuple[np.ndarray, np.ndarray] | None:
    """The two daughters of a track whose mask turned into a peanut, else None.

    ``recent_area``: the track's mean area (pixels) over its last frames. The
    mitotic cues are :func:`may_divide`'s to check. See the
    module's shape division rule.
    """
    track_mask = np.asarray(track_mask, bool)
    rows, cols = np.nonzero(track_mask)
    area = rows.size
    if area < 3:
        return None
    if not cfg.shrink_ratio * recent_area <= area <= recent_area / max(cfg.shrink_ratio, 1e-9):
        return None
    aspect, axis = _axes(rows, cols)
    if aspect < cfg.elongated_aspect:
        return None
    # Cut across the long axis through the centroid: the waist of a peanut, and
    # halves of about equal size even where the mask covers one daughter and a
    # part of the other (a watershed from points on the axis was lopsided there).
    along = (rows - rows.mean()) * axis[0] + (cols - cols.mean()) * axis[1]
    first = np.zeros(track_mask.shape, bool)
    second = np.zeros(track_mask.shape, bool)
    first[rows[along > 0], cols[along > 0]] = True
    second[rows[along <= 0], cols[along <= 0]] = True
    floor = max(cfg.min_area, cfg.split_min_fraction * float(recent_area), 1)
    if first.sum() < second.sum():
        first, second = second, first
    small = int(second.sum())
    if small < floor or small < cfg.sister_ratio * int(first.sum()):
        return None
    return first, second


def new_objects(candidates: np.ndarray, labels: np.ndarray, cfg: TrackConfig) -> list[np.ndarray]:
    """New objects among generator masks (K, H, W), given in best-first order.

    Returns non-overlapping (H, W) masks of unlabelled pixels (see the module rules).
    """
    labels = np.asarray(labels)
    taken = labels > 0
    max_area = cfg.max_area_fraction * labels.size
    out = []
    for cand in np.asarray(candidates, bool):
        area = int(cand.sum())
        if area < max(cfg.min_area, 1) or area > max_area:
            continue
        if (cand & taken).sum() > cfg.new_overlap * area:
            continue
        free = components(cand & ~taken, cfg.min_area)
        if not free:
            continue
        out.append(free[0])
        taken = taken | free[0]
    return out


def shrunk(area_now: int, recent: list[int] | tuple[int, ...], ratio: float) -> bool:
    """True when ``area_now`` is below ``ratio`` times the mean of the earlier ``recent`` areas."""
    return bool(recent) and area_now < ratio * float(np.mean(recent))


def division_mother(
    new_mask: np.ndarray, labels: np.ndarray, shrunk_ids, distance: int
) -> int | None:
    """The shrunk track (id in ``shrunk_ids``) touching ``new_mask`` most, or None.

    Contact is the number of the track's pixels separated from the new object
    by at most ``distance`` background pixels (an 8-connected dilation by
    ``distance + 1``; 0 means touching).
    """
    candidates = set(int(i) for i in shrunk_ids)
    if not candidates:
        return None
    ring = ndimage.binary_dilation(new_mask, _EIGHT, iterations=distance + 1)
    touched = labels[ring & ~new_mask]
    best, best_count = None, 0
    for tid in sorted(candidates):
        count = int((touched == tid).sum())
        if count > best_count:
            best, best_count = tid, count
    return best
