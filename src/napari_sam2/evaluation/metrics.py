"""Scoring segmentations and tracks: DAVIS J&F, Cell Tracking Challenge metrics.

* :func:`jf_scores` -- region similarity J and boundary accuracy F per object, as
  the DAVIS 2017 evaluation defines them (``db_eval_iou`` / ``db_eval_boundary``).
* :func:`write_ctc` -- export a label volume in Cell Tracking Challenge format.
* :func:`ctc_scores` -- CTC SEG, DET and TRA, computed by ``py-ctcmetrics``.
* :func:`next_click` -- the corrective click of the standard interactive protocol.

Label volumes are integer arrays ``(T, H, W)`` (``(T, Z, H, W)`` for the CTC
functions), 0 is background, and an object keeps the same label value in every
frame. Predicted and ground-truth objects are paired by label value.
Coordinates are ``(row, col)``; distances are in pixels.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from ..errors import InputError
from ..files.ctc import UINT16_MAX, ctc_tracks, label_array, write_ctc  # noqa: F401 - CTC export lives in files/ctc.py

__all__ = [
    "DAVIS_BOUND_TH",
    "JFScores",
    "boundary_f",
    "boundary_tolerance",
    "ctc_scores",
    "ctc_tracks",
    "jaccard",
    "jf_scores",
    "next_click",
    "seg2bmap",
    "write_ctc",
]

#: DAVIS boundary tolerance, as a fraction of the image diagonal.
DAVIS_BOUND_TH = 0.008


# --------------------------------------------------------------------------- validation


def _same_shape(pred: np.ndarray, gt: np.ndarray, pred_name: str, gt_name: str) -> None:
    if pred.shape != gt.shape:
        raise InputError(
            f"{pred_name}: shape {pred.shape} does not match {gt_name} shape {gt.shape}"
        )


def _mask(name: str, mask) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise InputError(f"{name}: expected a 2D mask (H, W), got shape {arr.shape}")
    return arr.astype(bool, copy=False)


# --------------------------------------------------------------------------- J and F


def jaccard(pred_mask, gt_mask) -> float:
    """Region similarity J: intersection over union of two ``(H, W)`` masks.

    As in DAVIS, J is 1 when both masks are empty.
    """
    pred = _mask("pred_mask", pred_mask)
    gt = _mask("gt_mask", gt_mask)
    _same_shape(pred, gt, "pred_mask", "gt_mask")
    return _jaccard(pred, gt)


def _jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return 1.0
    return np.count_nonzero(pred & gt) / union


def seg2bmap(mask) -> np.ndarray:
    """One-pixel-wide boundary map of a ``(H, W)`` mask, by the DAVIS rule.

    A pixel is on the boundary when it differs from its east, south or south-east
    neighbour. In the last row only the east neighbour counts, in the last column
    only the south one, and the bottom-right pixel is never a boundary; pixels past
    the image edge count as background. So the image border itself is not a
    boundary: a mask covering the whole image has an empty boundary map.

    Returns:
        ``(H, W)`` bool array.
    """
    return _seg2bmap(_mask("mask", mask))


def _seg2bmap(seg: np.ndarray) -> np.ndarray:
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    bmap = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    bmap[-1, :] = seg[-1, :] ^ east[-1, :]
    bmap[:, -1] = seg[:, -1] ^ south[:, -1]
    bmap[-1, -1] = False
    return bmap


def boundary_tolerance(shape, bound_th: float = DAVIS_BOUND_TH) -> int:
    """Boundary matching radius of DAVIS: ``ceil(bound_th * image diagonal)`` pixels.

    Args:
        shape: image shape ``(H, W)``.
        bound_th: fraction of the diagonal; DAVIS uses 0.008.

    Examples: 480x854 -> 8, 1024x1024 -> 12, 2048x2048 -> 24.
    """
    return int(np.ceil(bound_th * np.linalg.norm(np.asarray(shape[-2:], dtype=float))))


def _near(bmap: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within Euclidean distance ``radius`` of a True pixel of ``bmap``.

    This is the dilation of ``bmap`` by the disk ``{x^2 + y^2 <= radius^2}`` (DAVIS's
    structuring element), computed with a distance transform because it is much
    faster than a disk dilation at large radii and gives the same pixels exactly.
    """
    if not bmap.any():
        return np.zeros_like(bmap)
    return ndimage.distance_transform_edt(~bmap) <= radius


def _precision_recall(pred: np.ndarray, gt: np.ndarray, radius: int) -> tuple[float, float]:
    """Boundary precision and recall, with DAVIS's rules for empty boundaries."""
    pred_b = _seg2bmap(pred)
    gt_b = _seg2bmap(gt)
    n_pred = np.count_nonzero(pred_b)
    n_gt = np.count_nonzero(gt_b)
    if n_pred == 0 and n_gt == 0:
        return 1.0, 1.0
    if n_pred == 0:
        return 1.0, 0.0
    if n_gt == 0:
        return 0.0, 1.0
    precision = np.count_nonzero(pred_b & _near(gt_b, radius)) / n_pred
    recall = np.count_nonzero(gt_b & _near(pred_b, radius)) / n_gt
    return precision, recall


def _f_measure(precision: float, recall: float) -> float:
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _check_bound(bound_pixels) -> int | None:
    if bound_pixels is None:
        return None
    if isinstance(bound_pixels, bool) or not isinstance(bound_pixels, (int, np.integer)):
        raise InputError(f"bound_pixels: expected an integer >= 0, got {bound_pixels!r}")
    if bound_pixels < 0:
        raise InputError(f"bound_pixels: expected an integer >= 0, got {bound_pixels}")
    return int(bound_pixels)


def boundary_f(pred_mask, gt_mask, bound_pixels: int | None = None) -> float:
    """Boundary accuracy F of two ``(H, W)`` masks, as DAVIS's ``db_eval_boundary``.

    Boundaries come from :func:`seg2bmap`; a boundary pixel counts as matched when
    the other mask's boundary lies within ``bound_pixels`` (Euclidean) of it.
    Precision and recall are the matched fractions of the predicted and of the
    ground-truth boundary, and ``F = 2PR / (P + R)`` (0 when ``P + R == 0``).
    Empty boundaries: both empty -> P = R = 1; prediction empty only -> P = 1,
    R = 0; ground truth empty only -> P = 0, R = 1.

    Args:
        pred_mask, gt_mask: ``(H, W)`` masks (any dtype, nonzero is inside).
        bound_pixels: matching radius in pixels; by default
            :func:`boundary_tolerance` of the image shape.
    """
    pred = _mask("pred_mask", pred_mask)
    gt = _mask("gt_mask", gt_mask)
    _same_shape(pred, gt, "pred_mask", "gt_mask")
    radius = _check_bound(bound_pixels)
    if radius is None:
        radius = boundary_tolerance(gt.shape)
    return _f_measure(*_precision_recall(pred, gt, radius))


@dataclass(frozen=True)
class JFScores:
    """J and F per object, DAVIS style.

    Attributes:
        objects: the ground-truth labels scored, ascending.
        frames: the frame indices scored.
        J_frames: ``(n_objects, n_frames)`` J of each object in each scored frame.
        F_frames: ``(n_objects, n_frames)`` F likewise.
        J: per-object J, the mean over frames.
        F: per-object F, the mean over frames.
        JF: per-object ``(J + F) / 2``.
        J_mean: mean of ``J`` over objects.
        F_mean: mean of ``F`` over objects.
        JF_mean: ``(J_mean + F_mean) / 2``, DAVIS's J&F.
    """

    objects: tuple[int, ...]
    frames: tuple[int, ...]
    J_frames: np.ndarray
    F_frames: np.ndarray
    J: dict[int, float]
    F: dict[int, float]
    JF: dict[int, float]
    J_mean: float
    F_mean: float
    JF_mean: float

    def as_dict(self) -> dict:
        """Plain ``dict`` of the per-object and mean scores (no per-frame arrays)."""
        return {
            "objects": list(self.objects),
            "J": dict(self.J),
            "F": dict(self.F),
            "JF": dict(self.JF),
            "J_mean": self.J_mean,
            "F_mean": self.F_mean,
            "JF_mean": self.JF_mean,
        }


def jf_scores(
    pred_labels,
    gt_labels,
    *,
    skip_first_last: bool = False,
    bound_pixels: int | None = None,
) -> JFScores:
    """Score a predicted label volume against ground truth with DAVIS J and F.

    Every label present anywhere in ``gt_labels`` is an object; the prediction for it
    is the same label value in ``pred_labels`` (other predicted labels are ignored).
    For each object and frame, J is :func:`jaccard` and F :func:`boundary_f` of the
    two masks -- 1 and 1 in frames where both are empty. Scores are averaged over
    frames per object, then over objects.

    Args:
        pred_labels: ``(T, H, W)`` (or ``(H, W)``, one frame) integer labels.
        gt_labels: ground truth of the same shape.
        skip_first_last: leave out the first and last frame, as semi-supervised VOS
            does (the first frame's mask is the prompt); needs ``T >= 3``.
        bound_pixels: boundary tolerance in pixels; default
            :func:`boundary_tolerance` of ``(H, W)``.
    """
    pred = label_array("pred_labels", pred_labels, (2, 3))
    gt = label_array("gt_labels", gt_labels, (2, 3))
    _same_shape(pred, gt, "pred_labels", "gt_labels")
    if gt.ndim == 2:
        pred, gt = pred[None], gt[None]
    radius = _check_bound(bound_pixels)
    if radius is None:
        radius = boundary_tolerance(gt.shape[1:])
    n_frames = gt.shape[0]
    if skip_first_last:
        if n_frames < 3:
            raise InputError(f"skip_first_last: needs at least 3 frames, got {n_frames}")
        frames = tuple(range(1, n_frames - 1))
    else:
        frames = tuple(range(n_frames))
    objects = tuple(int(x) for x in np.unique(gt) if x != 0)
    if not objects:
        raise InputError("gt_labels: contains no objects")

    j_frames = np.ones((len(objects), len(frames)))
    f_frames = np.ones((len(objects), len(frames)))
    for col, t in enumerate(frames):
        # max_label keeps stray large predicted labels from costing memory.
        gt_boxes = ndimage.find_objects(gt[t], max_label=objects[-1])
        pred_boxes = ndimage.find_objects(pred[t], max_label=objects[-1])
        for row, obj in enumerate(objects):
            box = _union_box(_box(gt_boxes, obj), _box(pred_boxes, obj), radius + 1, gt.shape[1:])
            if box is None:
                continue  # absent from both: J = F = 1
            p, g = pred[t][box] == obj, gt[t][box] == obj
            j_frames[row, col] = _jaccard(p, g)
            f_frames[row, col] = _f_measure(*_precision_recall(p, g, radius))

    j_obj = j_frames.mean(axis=1)
    f_obj = f_frames.mean(axis=1)
    j_mean, f_mean = float(j_obj.mean()), float(f_obj.mean())
    return JFScores(
        objects=objects,
        frames=frames,
        J_frames=j_frames,
        F_frames=f_frames,
        J={o: float(v) for o, v in zip(objects, j_obj, strict=True)},
        F={o: float(v) for o, v in zip(objects, f_obj, strict=True)},
        JF={o: float(a + b) / 2 for o, a, b in zip(objects, j_obj, f_obj, strict=True)},
        J_mean=j_mean,
        F_mean=f_mean,
        JF_mean=(j_mean + f_mean) / 2,
    )


def _box(boxes: list, label: int):
    return boxes[label - 1] if label <= len(boxes) else None


def _union_box(a, b, margin: int, shape):
    """Union of two bounding boxes grown by ``margin`` pixels, clipped to ``shape``.

    Cropping to it changes neither J nor F: the boundary map of a crop grown by at
    least one pixel equals the crop of the full boundary map (the rows and columns
    added are background, so the last-row/column rules only fire where the crop
    meets the image edge), and every boundary pixel within the matching radius of
    another lies inside a margin of ``radius + 1``.
    """
    boxes = [x for x in (a, b) if x is not None]
    if not boxes:
        return None
    return tuple(
        slice(
            max(0, min(bx[d].start for bx in boxes) - margin),
            min(shape[d], max(bx[d].stop for bx in boxes) + margin),
        )
        for d in range(len(shape))
    )


# --------------------------------------------------------------------------- clicks


def next_click(pred_mask, gt_mask) -> tuple[int, int, int] | None:
    """The next corrective click of the standard interactive protocol (RITM, SAM).

    The error is split into false negatives (in ``gt_mask``, not in ``pred_mask``)
    and false positives. The click goes to the centre of the largest error region:
    the point deepest inside an error region, i.e. with the largest distance to the
    nearest correct pixel or the image edge (Euclidean distance transform). It is a
    positive click (label 1) when that point is a false negative, a negative click
    (label 0) when it is a false positive; when both are equally deep the click is
    negative, as in RITM. Ties within a region go to the first pixel in row-major
    order.

    Args:
        pred_mask: ``(H, W)`` current prediction (nonzero is inside).
        gt_mask: ``(H, W)`` ground truth.

    Returns:
        ``(row, col, label)``, or ``None`` when the masks agree everywhere.
    """
    pred = _mask("pred_mask", pred_mask)
    gt = _mask("gt_mask", gt_mask)
    _same_shape(pred, gt, "pred_mask", "gt_mask")
    false_neg = gt & ~pred
    false_pos = pred & ~gt
    if not (false_neg.any() or false_pos.any()):
        return None
    depth_fn = _depth(false_neg)
    depth_fp = _depth(false_pos)
    positive = depth_fn.max() > depth_fp.max()
    depth = depth_fn if positive else depth_fp
    row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(row), int(col), int(positive)


def _depth(region: np.ndarray) -> np.ndarray:
    """Distance of each region pixel to the nearest non-region pixel or the image edge."""
    if not region.any():
        return np.zeros(region.shape)
    # Padding with background makes the image edge count as the region's border,
    # so clicks stay off the edge.
    padded = np.pad(region, 1)
    return ndimage.distance_transform_edt(padded)[1:-1, 1:-1]


# --------------------------------------------------------------------------- CTC metrics


def ctc_scores(pred_labels, gt_labels, pred_lineage=None, gt_lineage=None) -> dict:
    """Cell Tracking Challenge SEG, DET and TRA of a prediction, by ``py-ctcmetrics``.

    Both volumes are exported with :func:`write_ctc` to a temporary folder (the
    ground truth as ``TRA`` and ``SEG``, every frame annotated) and scored by the
    ``ctc_metrics`` package.

    Args:
        pred_labels, gt_labels: ``(T, H, W)`` or ``(T, Z, H, W)`` integer labels of
            the same shape; labels need not correspond between the two.
        pred_lineage, gt_lineage: optional lineages (see :func:`write_ctc`); without
            them the tracks have no parents.

    Returns:
        ``{"SEG", "DET", "TRA"}`` in [0, 1], plus ``"AOGM"``, ``"AOGM_0"`` and the
        AOGM operation counts ``"AOGM_NS"``, ``"AOGM_FN"``, ``"AOGM_FP"``,
        ``"AOGM_ED"``, ``"AOGM_EA"``, ``"AOGM_EC"``.
    """
    try:
        from ctc_metrics.scripts.evaluate import evaluate_sequence
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("ctc_scores needs py-ctcmetrics: pip install py-ctcmetrics") from err

    pred = label_array("pred_labels", pred_labels, (3, 4))
    gt = label_array("gt_labels", gt_labels, (3, 4))
    _same_shape(pred, gt, "pred_labels", "gt_labels")
    if not gt.any():
        raise InputError("gt_labels: contains no objects")
    with tempfile.TemporaryDirectory(prefix="napari_sam2_ctc_") as tmp:
        res_dir, gt_dir = Path(tmp) / "01_RES", Path(tmp) / "01_GT"
        pred_tracks = write_ctc(pred, res_dir, pred_lineage)
        gt_tracks = write_ctc(gt, gt_dir, gt_lineage, ground_truth=True)
        if len(pred_tracks) == 0:
            return _empty_prediction_scores(gt_tracks)
        _check_label_range(res_dir, gt_dir)
        metrics = ["Valid", "SEG", "DET", "TRA"]
        with warnings.catch_warnings(record=True) as caught, redirect_stdout(io.StringIO()):
            warnings.simplefilter("always")
            results = evaluate_sequence(str(res_dir), str(gt_dir), metrics=metrics, threads=1)
    if not results.get("Valid"):
        details = "; ".join(str(w.message) for w in caught) or "no details"
        raise RuntimeError(f"py-ctcmetrics rejected the exported prediction: {details}")
    keys = ["SEG", "DET", "TRA", "AOGM", "AOGM_0"] + [
        f"AOGM_{k}" for k in ("NS", "FN", "FP", "ED", "EA", "EC")
    ]
    return {k: _plain(results[k]) for k in keys}


def _plain(value):
    value = np.asarray(value).item()
    return float(value) if isinstance(value, float) else int(value)


def _check_label_range(res_dir: Path, gt_dir: Path) -> None:
    # ctc_metrics offsets result labels by (max gt label + 1) in the masks' own
    # uint16 dtype; past 65535 that would wrap around silently.
    pred_max = max(int(tifffile.imread(p).max()) for p in res_dir.glob("mask*.tif"))
    gt_max = max(int(tifffile.imread(p).max()) for p in (gt_dir / "TRA").glob("*.tif"))
    if pred_max + gt_max + 1 > UINT16_MAX:
        raise InputError(
            f"pred_labels: labels up to {pred_max} plus ground truth labels up to {gt_max} "
            "overflow py-ctcmetrics' 16-bit matching; renumber the labels"
        )


def _empty_prediction_scores(gt_tracks: np.ndarray) -> dict:
    """Scores of an empty prediction: every ground-truth vertex and edge is missing.

    ``ctc_metrics`` cannot read an empty track file, so this case is done here with
    its AOGM weights (FN 10, EA 1.5).
    """
    n_vertices = int(sum(e - b + 1 for _, b, e, _ in gt_tracks))
    n_edges = int(sum(e - b for _, b, e, _ in gt_tracks) + np.count_nonzero(gt_tracks[:, 3]))
    aogm = 10 * n_vertices + 1.5 * n_edges
    return {
        "SEG": 0.0,
        "DET": 0.0,
        "TRA": 0.0,
        "AOGM": float(aogm),
        "AOGM_0": float(aogm),
        "AOGM_NS": 0,
        "AOGM_FN": n_vertices,
        "AOGM_FP": 0,
        "AOGM_ED": 0,
        "AOGM_EA": n_edges,
        "AOGM_EC": 0,
    }
