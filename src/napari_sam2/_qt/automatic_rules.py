"""Decisions of the widget's automatic mode, on plain arrays (no Qt, no napari).

How automatic results enter a labels layer that may already hold the user's
work (see :mod:`napari_sam2._qt.automatic` for the buttons):

- **Ids.** New cells ("Segment all") and tracks ("Track all cells") take ids
  above every label in the layer and every object id (:func:`id_offset`); a
  track ``k`` of a run is written as ``offset + k`` (:func:`shift_ids`). Ids
  that do not fit the layer's dtype are refused (:func:`check_ids_fit`).
- **Pixels.** A run of "Track all cells" writes into background pixels only
  (:func:`background_write`): every labelled pixel, painted or tracked before
  the run, keeps its id. Each frame is written once, when it is final.
- **New cells.** "Segment all" keeps the generator's masks, best predicted
  IoU first, by the tracking rule for new cells
  (:func:`napari_sam2.tracking.decisions.new_objects`): at most
  ``new_overlap`` of a mask may be labelled already, and only its unlabelled
  pixels are kept (:func:`new_cells`).
- **Corrections.** A track of the last complete run that the user prompts
  (a click, a box, a painted mask) enters the interactive session as an
  object (:class:`TrackHandover`): its first frame's mask is its mask prompt,
  it exists only on its own frames (a mother ends at its division, a daughter
  starts at it), and the frames after its first count as tracked forward, so
  the prompt is a correction re-tracked forward from its frame, like a manual
  object's.
- **Tracks layer.** Data and division graph ``{daughter: [mother]}`` of the
  tracking result, in the ids as written (:func:`tracks_layer_data`).

Frames are (H, W) arrays; a frame's position in the 3D layer is ``frame``
along ``axis``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .controller import label_write


def id_offset(labels_max: int, object_ids: Iterable[int] = ()) -> int:
    """The largest id in use: the layer's largest label or the largest object id (>= 0)."""
    return max([0, int(labels_max), *(int(i) for i in object_ids)])


def check_ids_fit(max_id: int, dtype) -> None:
    """Refuse ids the labels layer's dtype cannot hold (InputError naming the layer)."""
    dtype = np.dtype(dtype)
    top = np.iinfo(dtype).max if dtype.kind in "iu" else 2**53
    if int(max_id) > top:
        raise InputError(
            f"labels: id {int(max_id)} does not fit the labels layer's dtype {dtype} "
            f"(at most {top}); convert the layer to int32"
        )


def shift_ids(frame_labels: np.ndarray, offset: int) -> np.ndarray:
    """(H, W) int64: ids ``k > 0`` become ``offset + k``; background stays 0."""
    labels = np.asarray(frame_labels).astype(np.int64)
    return np.where(labels > 0, labels + int(offset), 0)


def background_write(current: np.ndarray, predicted: np.ndarray, axis: int, frame: int):
    """Indices and values that write ``predicted`` into the background of ``current``.

    Only pixels that are 0 in ``current`` (H, W) may change; returns None when
    none does (see :func:`napari_sam2._qt.controller.label_write`).
    """
    return label_write(current, predicted, (), axis, frame)


def new_cells(found, current: np.ndarray, cfg) -> list[np.ndarray]:
    """(H, W) bool masks of the new cells among generator masks ``found``.

    ``found``: :class:`~napari_sam2.tracking.mask_generator.GeneratedMasks`;
    ``current``: the frame's labels (H, W); ``cfg``: a
    :class:`~napari_sam2.tracking.decisions.TrackConfig`. Best predicted IoU
    first (ties: generator order); masks never overlap each other or a label.
    """
    from ..tracking.decisions import new_objects

    if not len(found):
        return []
    order = np.argsort(-np.asarray(found.predicted_iou), kind="stable")
    return new_objects(np.asarray(found.masks)[order], current, cfg)


def shifted_lineage(lineage, offset: int) -> dict[int, tuple[int, int, int]]:
    """{track: (start, end, parent)} with every id (parents too, 0 stays 0) shifted by ``offset``."""
    off = int(offset)
    return {
        int(k) + off: (int(s), int(e), int(p) + off if p else 0) for k, (s, e, p) in lineage.items()
    }


def tracks_layer_data(labels: np.ndarray, lineage, offset: int):
    """Data (N, 4) ``track_id, frame, row, col`` and graph ``{daughter: [mother]}``.

    ``labels`` (T, H, W) and ``lineage`` as a
    :class:`~napari_sam2.tracking.tracker.TrackingResult` holds them (ids from
    1); ids in the output are shifted by ``offset``, as written to the layer.
    """
    from ..tracking.export import napari_tracks

    data, graph = napari_tracks(labels, lineage)
    data = data.copy()
    data[:, 0] += int(offset)
    off = int(offset)
    return data, {d + off: [p + off for p in ps] for d, ps in graph.items()}


@dataclass
class TrackHandover:
    """The tracks of the last complete "Track all cells" run not yet in the session.

    ``labels``: (T, H, W) the run's track ids (from 1, frames first);
    ``lineage``: its {track: (start, end, parent)}; ``offset``: added to each
    id when written. :meth:`take` hands one track over (once); :meth:`drop`
    forgets one (removed).
    """

    labels: np.ndarray
    lineage: dict
    offset: int
    taken: set[int] = field(default_factory=set)

    def __contains__(self, obj: int) -> bool:
        tid = int(obj) - int(self.offset)
        return tid in self.lineage and int(obj) not in self.taken

    def drop(self, obj: int) -> None:
        """Never hand ``obj`` over (it was removed)."""
        self.taken.add(int(obj))

    def take(self, obj: int) -> tuple[tuple[int, int], np.ndarray] | None:
        """(first, last) frames and the (H, W) bool mask on the first of written id
        ``obj``, or None if it is no track of the run or was handed over already."""
        if obj not in self:
            return None
        self.taken.add(int(obj))
        tid = int(obj) - int(self.offset)
        start, end, _ = self.lineage[tid]
        return (int(start), int(end)), np.asarray(self.labels[start]) == tid
