"""Writing tracking results: CTC, GEFF, CSV, and napari Tracks layer data.

Every function takes the label volume (T, H, W) int and the lineage
``{track_id: (start, end, parent)}`` of a :class:`~.tracker.TrackingResult`
(or the result itself through its attributes). Positions are (row, col) in
pixels, frames are 0-based. Nothing here imports napari.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..files.atomic import atomic_path
from ..files.ctc import write_ctc as _write_ctc

TABLE_COLUMNS = ("track_id", "frame", "row", "col", "area", "parent")


def lineage_rows(lineage) -> np.ndarray:
    """{id: (start, end, parent)} -> (N, 4) int64 rows (label, first, last, parent)."""
    rows = [(int(k), *map(int, v)) for k, v in sorted(lineage.items())]
    return np.asarray(rows, np.int64).reshape(-1, 4)


def track_table(labels: np.ndarray, lineage) -> np.ndarray:
    """One row per track and frame where it has pixels.

    Returns a structured array with fields ``track_id, frame, row, col, area,
    parent`` (centroid in pixels), sorted by track then frame.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise InputError(f"labels: expected (T, H, W), got shape {labels.shape}")
    dtype = [
        ("track_id", np.int64),
        ("frame", np.int64),
        ("row", np.float64),
        ("col", np.float64),
        ("area", np.int64),
        ("parent", np.int64),
    ]
    rows = []
    for t in range(labels.shape[0]):
        ids = np.unique(labels[t])
        ids = ids[ids > 0]
        if not len(ids):
            continue
        areas = ndimage.sum_labels(np.ones_like(labels[t]), labels[t], ids)
        cents = ndimage.center_of_mass(np.ones_like(labels[t]), labels[t], ids)
        for tid, area, (r, c) in zip(ids, areas, cents):
            parent = lineage.get(int(tid), (0, 0, 0))[2]
            rows.append((int(tid), t, float(r), float(c), int(area), int(parent)))
    table = np.array(rows, dtype=dtype)
    return table[np.lexsort((table["frame"], table["track_id"]))]


def write_csv(labels, lineage, path) -> Path:
    """CSV of :func:`track_table` (header ``track_id,frame,row,col,area,parent``).

    Written to a temporary file next to ``path`` and renamed into place when complete.
    """
    path = Path(path)
    table = track_table(labels, lineage)
    with atomic_path(path, ".csv") as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(TABLE_COLUMNS)
        for rec in table:
            writer.writerow(
                [rec["track_id"], rec["frame"], f"{rec['row']:.3f}", f"{rec['col']:.3f}"]
                + [rec["area"], rec["parent"]]
            )
    return path


def write_ctc(labels, lineage, folder, overwrite: bool = False) -> np.ndarray:
    """Cell Tracking Challenge result: ``maskTTT.tif`` + ``res_track.txt`` with parents.

    A track with frames missing inside its span is split there, the later
    piece getting a new label whose parent is the earlier piece (CTC needs
    every track present from its begin to its end). Returns the track table.
    """
    return _write_ctc(labels, folder, lineage_rows(lineage), overwrite=overwrite)


def napari_tracks(labels, lineage) -> tuple[np.ndarray, dict[int, list[int]]]:
    """Data and graph of a napari Tracks layer.

    Returns ``data`` (N, 4) float: ``track_id, frame, row, col`` (centroids),
    and ``graph`` ``{daughter: [mother]}`` for every division.
    """
    table = track_table(labels, lineage)
    data = np.stack([table["track_id"], table["frame"], table["row"], table["col"]], axis=1).astype(
        np.float64
    )
    present = set(table["track_id"].tolist())
    graph = {
        int(tid): [int(p)]
        for tid, (_, _, p) in sorted(lineage.items())
        if p and tid in present and p in present
    }
    return data, graph


def to_graph(labels, lineage):
    """A networkx DiGraph: one node per (track, frame) with t, y, x, area, track_id;
    edges link a track's consecutive detections and a mother's last to each
    daughter's first detection."""
    import networkx as nx

    table = track_table(labels, lineage)
    graph = nx.DiGraph()
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    prev: dict[int, int] = {}
    for node, rec in enumerate(table):
        tid = int(rec["track_id"])
        graph.add_node(
            node,
            t=int(rec["frame"]),
            y=float(rec["row"]),
            x=float(rec["col"]),
            area=int(rec["area"]),
            track_id=tid,
        )
        if tid in prev:
            graph.add_edge(prev[tid], node)
        prev[tid] = node
        first.setdefault(tid, node)
        last[tid] = node
    for tid, (_, _, parent) in lineage.items():
        if parent and tid in first and parent in last:
            graph.add_edge(last[parent], first[tid])
    return graph


def write_geff(labels, lineage, path, overwrite: bool = False) -> Path:
    """Write the tracking graph (:func:`to_graph`) as GEFF (a zarr folder) with ``geff``."""
    try:
        import geff
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise InputError("format: GEFF output needs the geff package (pip install geff)") from err
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"out: {path} already exists")
    geff.write(
        to_graph(labels, lineage),
        str(path),
        axis_names=["t", "y", "x"],
        axis_types=["time", "space", "space"],
        axis_units=["frame", "pixel", "pixel"],
        overwrite=overwrite,
    )
    return path


def read_geff_lineage(path) -> dict[int, tuple[int, int, int]]:
    """The lineage ``{track_id: (start, end, parent)}`` stored in a GEFF written here."""
    import geff

    graph, _ = geff.read(str(path))
    spans: dict[int, list[int]] = {}
    parent: dict[int, int] = {}
    for _, attrs in graph.nodes(data=True):
        tid, t = int(attrs["track_id"]), int(attrs["t"])
        span = spans.setdefault(tid, [t, t])
        span[0], span[1] = min(span[0], t), max(span[1], t)
    for a, b in graph.edges():
        ta, tb = int(graph.nodes[a]["track_id"]), int(graph.nodes[b]["track_id"])
        if ta != tb:
            parent[tb] = ta
    return {tid: (s, e, parent.get(tid, 0)) for tid, (s, e) in sorted(spans.items())}
