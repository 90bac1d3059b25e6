"""Cell Tracking Challenge export: ``maskNNN.tif`` frames and ``res_track.txt``.

:func:`ctc_tracks` derives the CTC track table from a label volume (and an
optional lineage), :func:`write_ctc` writes a CTC result folder, and
:func:`export_ctc` replaces a folder's CTC files all or nothing. numpy and
tifffile only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import tifffile

from ..errors import InputError
from .atomic import scratch_dir

__all__ = ["ctc_tracks", "export_ctc", "label_array", "write_ctc"]

UINT16_MAX = 65535  # CTC masks are 16-bit


def label_array(name: str, labels, ndims: tuple[int, ...]) -> np.ndarray:
    """Check that ``labels`` is a non-negative integer (or bool) array of an allowed ndim."""
    arr = np.asarray(labels)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name}: expected an integer label array, got dtype {arr.dtype}")
    if arr.ndim not in ndims:
        allowed = " or ".join(str(n) for n in ndims)
        raise InputError(f"{name}: expected {allowed} dimensions, got shape {arr.shape}")
    if arr.size and arr.min() < 0:
        raise InputError(f"{name}: labels must be >= 0, found {arr.min()}")
    return arr


def _lineage_array(lineage) -> np.ndarray:
    """Lineage as an ``(N, 4)`` int64 array ``label, first, last, parent``.

    Accepts an ``(N, 4)`` array, a structured array with fields ``label, first, last,
    parent``, or rows that are 4-sequences or objects with those attributes
    (e.g. :class:`napari_sam2.evaluation.synthetic.LineageRow`).
    """
    fields = ("label", "first", "last", "parent")
    if isinstance(lineage, np.ndarray) and lineage.dtype.names:
        missing = [f for f in fields if f not in lineage.dtype.names]
        if missing:
            raise InputError(f"lineage: structured array lacks fields {missing}")
        rows = np.stack([lineage[f] for f in fields], axis=-1)
    else:
        rows = [
            tuple(getattr(r, f) for f in fields) if hasattr(r, "label") else tuple(r)
            for r in lineage
        ]
    try:
        arr = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    except (TypeError, ValueError):
        raise InputError(
            "lineage: expected rows of 4 integers (label, first, last, parent)"
        ) from None
    labels = arr[:, 0]
    if np.any(labels <= 0) or np.any(arr[:, 3] < 0):
        raise InputError("lineage: labels must be > 0 and parents >= 0")
    if len(np.unique(labels)) != len(labels):
        raise InputError("lineage: a label appears in more than one row")
    return arr


def _segments(labels: np.ndarray) -> dict[int, list[list[int]]]:
    """Runs of consecutive frames in which each label has pixels: ``{label: [[b, e]...]}``."""
    runs: dict[int, list[list[int]]] = {}
    for t in range(labels.shape[0]):
        for label in np.unique(labels[t]):
            if label == 0:
                continue
            label = int(label)
            spans = runs.setdefault(label, [])
            if spans and spans[-1][1] == t - 1:
                spans[-1][1] = t
            else:
                spans.append([t, t])
    return runs


def ctc_tracks(labels, lineage=None) -> tuple[np.ndarray, np.ndarray]:
    """CTC tracks of a label volume, splitting labels that vanish and come back.

    In CTC format a track is present in every frame from its begin to its end. A
    label that disappears and reappears after a gap is therefore split: each later
    segment gets a new label (above all existing ones) whose parent is the previous
    segment, and the masks are rewritten to match.

    Args:
        labels: ``(T, H, W)`` or ``(T, Z, H, W)`` integer labels.
        lineage: optional rows ``(label, first, last, parent)`` (see
            :func:`write_ctc`). Parents are taken from it; every label must be listed,
            with ``first``/``last`` equal to its first/last frame in ``labels``, and a
            parent must end before its child begins. Without it every track starts
            without a parent.

    Returns:
        ``(labels, tracks)``: the (possibly relabelled) volume, same shape and dtype
        (a copy only if something was split), and an ``(N, 4)`` int64 array of
        ``L B E P`` rows sorted by label.
    """
    volume = label_array("labels", labels, (3, 4))
    runs = _segments(volume)
    parents = _lineage_parents(runs, lineage) if lineage is not None else {}

    next_label = max(runs, default=0) + 1
    rows: list[list[int]] = []
    last_piece: dict[int, int] = {}
    out = volume
    for label in sorted(runs):
        previous = 0
        for i, (begin, end) in enumerate(runs[label]):
            new = label if i == 0 else next_label
            if i > 0:
                next_label += 1
                if out is volume:
                    out = volume.copy()
                for t in range(begin, end + 1):
                    out[t][volume[t] == label] = new
            rows.append([new, begin, end, previous if i > 0 else -label])
            previous = new
        last_piece[label] = previous
    for row in rows:
        if row[3] < 0:  # first piece of a label: link to the last piece of its parent
            parent = parents.get(-row[3], 0)
            row[3] = last_piece[parent] if parent else 0
    tracks = np.asarray(sorted(rows), dtype=np.int64).reshape(-1, 4)
    return out, tracks


def _lineage_parents(runs: dict[int, list[list[int]]], lineage) -> dict[int, int]:
    """Check ``lineage`` against the label volume and return ``{label: parent}``."""
    table = _lineage_array(lineage)
    rows = {int(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in table}
    for label in runs:
        if label not in rows:
            raise InputError(f"lineage: label {label} is in labels but has no lineage row")
    for label, (first, last, parent) in rows.items():
        if label not in runs:
            raise InputError(f"lineage: label {label} has no pixels in labels")
        begin, end = runs[label][0][0], runs[label][-1][1]
        if (first, last) != (begin, end):
            raise InputError(
                f"lineage: label {label} spans frames {first}-{last} "
                f"but labels has it in frames {begin}-{end}"
            )
        if parent:
            if parent not in rows:
                raise InputError(f"lineage: parent {parent} of label {label} has no row")
            if rows[parent][1] >= first:
                raise InputError(
                    f"lineage: parent {parent} of label {label} ends at frame "
                    f"{rows[parent][1]}, not before frame {first}"
                )
    return {label: row[2] for label, row in rows.items()}


_CTC_FILES = re.compile(
    r"^(mask\d+\.tif|res_track\.txt|man_track\d+\.tif|man_seg\d+\.tif|man_track\.txt)$"
)


def write_ctc(
    labels,
    folder,
    lineage=None,
    *,
    ground_truth: bool = False,
    overwrite: bool = False,
) -> np.ndarray:
    """Write a label volume in Cell Tracking Challenge format.

    Results (default): ``folder/maskNNN.tif`` and ``folder/res_track.txt``.
    Ground truth (``ground_truth=True``): ``folder/TRA/man_trackNNN.tif``,
    ``folder/TRA/man_track.txt`` and ``folder/SEG/man_segNNN.tif`` (every frame
    fully segmented). Masks are uint16 TIFFs numbered with 3 digits, 4 when there
    are more than 1000 frames. Track lines are ``L B E P`` (label, begin frame, end
    frame, parent label or 0). Labels that vanish and come back are split into new
    tracks as described in :func:`ctc_tracks`.

    Args:
        labels: ``(T, H, W)`` or ``(T, Z, H, W)`` integer labels.
        folder: output folder, created if needed.
        lineage: optional ``(label, first, last, parent)`` rows: an ``(N, 4)`` array,
            a structured array with those fields, or rows such as
            :class:`napari_sam2.evaluation.synthetic.LineageRow`. Without it, tracks are
            derived from the label volume, with no parents.
        ground_truth: write the ground-truth layout instead of a result.
        overwrite: replace CTC files already in the folder (only those); otherwise
            their presence is an error, so no stale frames get mixed in.

    Returns:
        The ``(N, 4)`` int64 track table written.
    """
    volume, tracks = ctc_tracks(labels, lineage)
    if volume.size and volume.max() > UINT16_MAX:
        raise InputError(f"labels: label {volume.max()} does not fit CTC's 16-bit masks")
    folder = Path(folder)
    digits = 3 if volume.shape[0] <= 1000 else 4
    if ground_truth:
        tra, seg = folder / "TRA", folder / "SEG"
        targets = [(tra, "man_track"), (seg, "man_seg")]
        track_file = tra / "man_track.txt"
    else:
        targets = [(folder, "mask")]
        track_file = folder / "res_track.txt"
    for directory, _ in targets:
        _prepare_folder(directory, overwrite)
    masks = volume.astype(np.uint16, copy=False)
    for t in range(masks.shape[0]):
        for directory, stem in targets:
            tifffile.imwrite(directory / f"{stem}{t:0{digits}d}.tif", masks[t])
    track_file.write_text("".join(f"{a} {b} {c} {d}\n" for a, b, c, d in tracks), "utf-8")
    return tracks


def _prepare_folder(directory: Path, overwrite: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise InputError(f"folder: {directory} exists and is not a folder")
    directory.mkdir(parents=True, exist_ok=True)
    stale = [p for p in directory.iterdir() if _CTC_FILES.match(p.name)]
    if stale and not overwrite:
        raise InputError(f"folder: {directory} already holds CTC files; pass overwrite=True")
    for path in stale:
        path.unlink()


_RESULT_FILES = re.compile(r"^(mask\d{3,4}\.tif|res_track\.txt)$")


def export_ctc(labels, out: str | os.PathLike) -> None:
    """Write ``labels`` (T, H, W) as CTC results in ``out``, all or nothing.

    The export goes to a temporary folder next to ``out`` first. A new ``out``
    appears with one rename; in an existing folder the old result files
    (``maskNNN.tif``, ``res_track.txt``) are swapped for the new ones and other
    files there are kept.
    """
    out = Path(out)
    with scratch_dir(out) as tmp_dir:
        write_ctc(np.asarray(labels), tmp_dir)
        if not out.exists():
            os.replace(tmp_dir, out)
            return
        for old in out.iterdir():
            if _RESULT_FILES.match(old.name):
                old.unlink()
        for new in tmp_dir.iterdir():
            os.replace(new, out / new.name)
