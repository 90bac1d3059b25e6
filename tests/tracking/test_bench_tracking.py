"""The tracking benchmark and its laptrack baselines run end to end (tiny sizes)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_sam2.evaluation.metrics import ctc_scores
from napari_sam2.evaluation.synthetic import make_timelapse

BENCH = Path(__file__).parents[2] / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_laptrack_linking_of_true_masks_recovers_tracks_and_divisions():
    base = _load("tracking_baselines")
    tl = make_timelapse(n_frames=20, shape=(128, 128), n_cells=6, seed=10050, division_rate=0.1)
    labels, lineage = base.link_laptrack(tl.labels)
    rows = [(k, *v) for k, v in sorted(lineage.items())]
    scores = ctc_scores(labels, tl.labels, rows, tl.lineage)
    assert scores["DET"] == 1.0 and scores["TRA"] >= 0.95
    assert sum(1 for r in rows if r[3]) >= 2  # divisions linked to mothers


def test_classical_segmentation_finds_easy_cells():
    base = _load("tracking_baselines")
    tl = make_timelapse(n_frames=1, shape=(128, 128), n_cells=6, snr=6.0, seed=10051)
    seg = base.classical_segment(tl.image[0])
    assert abs(int(seg.max()) - (len(np.unique(tl.labels[0])) - 1)) <= 1


def test_benchmark_runs_and_writes_json(tmp_path):
    bench = _load("bench_tracking")
    out = tmp_path / "b.json"
    argv = ["--methods", "classical+laptrack", "--frames", "5", "--size", "96"]
    assert bench.main([*argv, "--seeds", "1", "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert {r["condition"] for r in payload["rows"]} == {"easy", "hard"}
    for row in payload["rows"]:
        assert all(0.0 <= row[k] <= 1.0 for k in ("SEG", "DET", "TRA", "CHOTA"))
    # the ten-clip held-out set, and settings that turn a cue off
    sets = ["--set", "round_aspect=none", "--set", "dim_ratio=0.7", "--set", "history=4"]
    more = ["--extended", "--seeds", "1", "--conditions", "easy", *sets]
    assert bench.main([*argv, *more, "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert [r["seed"] for r in payload["rows"]] == [bench.EXTENDED["easy"][0]]
    assert "round_aspect=None" in payload["config"] and "dim_ratio=0.7" in payload["config"]
    assert "history=4," in payload["config"]


@pytest.mark.slow
def test_scale_benchmark_one_run():
    scale = _load("bench_tracking_scale")
    row = scale.one_run("random", n_cells=2, n_frames=3, size=64, image_size=64)
    assert row["cells"] == 2 and row["frames"] == 3
    assert row["peak_rss_mb"] > 0 and row["s_per_frame_per_object"] > 0
    assert row["temp_disk_bytes"] < 4096  # no spilled memories: forward tracking keeps none
