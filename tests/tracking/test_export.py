"""Tracking outputs: GEFF round trip, CTC validity, CSV and napari Tracks data."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_sam2.errors import InputError
from napari_sam2.evaluation.synthetic import make_timelapse
from napari_sam2.tracking import export


@pytest.fixture(scope="module")
def clip():
    """A synthetic clip with at least one division; lineage as {id: (start, end, parent)}."""
    for seed in range(10000, 10020):
        tl = make_timelapse(n_frames=30, shape=(96, 96), n_cells=6, seed=seed, division_rate=0.08)
        lineage = {r.label: (r.first, r.last, r.parent) for r in tl.lineage}
        if any(p for _, _, p in lineage.values()):
            return tl.labels, lineage
    raise AssertionError("no synthetic clip with a division")


def test_geff_round_trip_keeps_the_lineage(clip, tmp_path):
    labels, lineage = clip
    path = export.write_geff(labels, lineage, tmp_path / "tracks.geff")
    assert export.read_geff_lineage(path) == lineage
    with pytest.raises(InputError, match="exists"):
        export.write_geff(labels, lineage, path)


def test_ctc_output_is_valid(clip, tmp_path):
    from ctc_metrics.scripts.validate import validate_sequence

    labels, lineage = clip
    export.write_ctc(labels, lineage, tmp_path / "01_RES")
    assert sorted(p.name for p in (tmp_path / "01_RES").iterdir())[0] == "mask000.tif"
    text = (tmp_path / "01_RES" / "res_track.txt").read_text()
    assert any(line.split()[3] != "0" for line in text.splitlines())  # parents written
    assert validate_sequence(str(tmp_path / "01_RES"), threads=1)["Valid"] == 1


def test_csv_and_tracks_layer_data(clip, tmp_path):
    labels, lineage = clip
    path = export.write_csv(labels, lineage, tmp_path / "tracks.csv")
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(export.TABLE_COLUMNS)
    n_detections = sum(len(np.unique(f)) - 1 for f in labels)
    assert len(rows) == n_detections
    first = rows[0]
    tid, t = int(first["track_id"]), int(first["frame"])
    rr, cc = np.nonzero(labels[t] == tid)
    assert float(first["row"]) == pytest.approx(rr.mean(), abs=1e-3)
    assert int(first["area"]) == len(rr) and int(first["parent"]) == lineage[tid][2]

    data, graph = export.napari_tracks(labels, lineage)
    assert data.shape == (n_detections, 4)
    assert graph == {k: [p] for k, (_, _, p) in lineage.items() if p}
    # napari wants rows sorted by track then time
    order = np.lexsort((data[:, 1], data[:, 0]))
    assert np.array_equal(order, np.arange(len(data)))
