"""Baselines for automatic tracking: per-frame segmentations linked by ``laptrack``.

- :func:`classical_segment`: Gaussian smoothing, Otsu threshold, distance-transform
  watershed (one label per nucleus).
- :func:`generator_segment`: SAM 2's mask generator on one frame, cell-sized masks
  painted into a label image.
- :func:`link_laptrack`: link per-frame labels by centroid LAP tracking with
  splitting (divisions) and gap closing -> track labels and a lineage.

Each returns arrays only; the benchmark (bench_tracking.py) scores them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.measure import regionprops_table
from skimage.morphology import remove_small_objects
from skimage.segmentation import watershed


def classical_segment(frame: np.ndarray, min_area: int = 20, min_distance: int = 5) -> np.ndarray:
    """(H, W) image -> (H, W) int32 labels: Otsu foreground split by a watershed
    on the distance transform, seeded at its local maxima ``min_distance`` apart."""
    smooth = gaussian(np.asarray(frame, np.float32), sigma=1.0, preserve_range=True)
    fg = smooth > threshold_otsu(smooth)
    fg = ndimage.binary_opening(fg, iterations=1)
    fg = remove_small_objects(fg, max_size=min_area - 1) if min_area > 1 else fg
    dist = ndimage.distance_transform_edt(fg)
    cores, _ = ndimage.label(fg)
    peaks = peak_local_max(dist, min_distance=min_distance, labels=cores, exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-dist, markers, mask=fg).astype(np.int32)


def generator_segment(generator, frame: np.ndarray, min_area: int, max_area: float) -> np.ndarray:
    """SAM 2 generator masks of cell size, as one label image (smallest mask on top)."""
    found = generator.generate(frame)
    areas = found.areas
    keep = np.nonzero((areas >= min_area) & (areas <= max_area))[0]
    return found.select(keep).label_image() if len(keep) else np.zeros(frame.shape[:2], np.int32)


def link_laptrack(
    seg: np.ndarray, max_distance: float = 15.0, split_distance: float = 20.0
) -> tuple[np.ndarray, dict[int, tuple[int, int, int]]]:
    """Link (T, H, W) per-frame labels into tracks with laptrack (centroid LAP).

    Returns the relabelled volume (track ids from 1) and ``{id: (start, end, parent)}``.
    At a division the mother's track ends and both daughters start new tracks.
    """
    import pandas as pd
    from laptrack import LapTrack

    rows = []
    for t, frame in enumerate(seg):
        if frame.any():
            props = regionprops_table(frame, properties=("label", "centroid"))
            for lab, r, c in zip(props["label"], props["centroid-0"], props["centroid-1"]):
                rows.append((t, int(lab), float(r), float(c)))
    out = np.zeros_like(seg, dtype=np.int32)
    if not rows:
        return out, {}
    df = pd.DataFrame(rows, columns=["frame", "label", "y", "x"])
    lt = LapTrack(
        cutoff=max_distance**2,
        splitting_cutoff=split_distance**2,
        gap_closing_cutoff=max_distance**2,
        gap_closing_max_frame_count=1,
    )
    track_df, split_df, _ = lt.predict_dataframe(
        df, coordinate_cols=["y", "x"], frame_col="frame", only_coordinate_cols=False
    )
    track_df = track_df.reset_index(drop=True)
    for (t, lab), tid in zip(zip(track_df["frame"], track_df["label"]), track_df["track_id"]):
        out[int(t)][seg[int(t)] == int(lab)] = int(tid) + 1
    parents = {}
    for p, c in zip(split_df.get("parent_track_id", []), split_df.get("child_track_id", [])):
        parents[int(c) + 1] = int(p) + 1
    lineage = {}
    for tid, group in track_df.groupby("track_id"):
        frames = group["frame"]
        lineage[int(tid) + 1] = (int(frames.min()), int(frames.max()), parents.get(int(tid) + 1, 0))
    return out, lineage
