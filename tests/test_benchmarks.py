"""The benchmark scripts run end to end (tiny sizes; no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speed_benchmark_runs_both_engines(tmp_path):
    out = tmp_path / "speed.json"
    argv = ["--image-size", "64", "--frames", "9", "--json", str(out)]
    assert _load("bench_speed").main(argv) == 0
    (row,) = json.loads(out.read_text())["rows"]
    for engine in ("ours", "ref"):
        for key in ("warmup_s", "steady_s", "click_s"):
            assert row[f"{engine}_{key}"] > 0
    assert math.isfinite(row["steady_ratio"]) and row["steady_ratio"] > 0
    assert len(row["ours_frames_s"]) == len(row["ref_frames_s"]) == 8


@pytest.mark.slow
def test_memory_benchmark_runs_both_engines(tmp_path):
    out = tmp_path / "memory.json"
    argv = ["--lengths", "3", "6", "--image-size", "64", "--json", str(out)]
    assert _load("bench_memory").main(argv) == 0
    payload = json.loads(out.read_text())
    assert {r["engine"] for r in payload["rows"]} == {"napari-sam2", "reference"}
    assert all(r["peak_rss_mb"] > 0 for r in payload["rows"])
    assert set(payload["ratio_last_first"]) == {"napari-sam2", "reference"}


def test_generator_benchmark_times_grid_and_peaks(tmp_path):
    out = _load("bench_generator").main(
        ["--model", "random", "--image-size", "64", "--frames", "1", "--repeats", "1",
         "--json", str(tmp_path / "g.json")]
    )  # fmt: skip
    assert out["grid"] > 0 and out["peaks"] > 0 and (tmp_path / "g.json").exists()
