"""``napari-sam2 track``: formats, frame ranges, one-line errors, no partial output.

The success cases replace the mask generator by one that returns the clip's
ground-truth cells (a random-init model finds nothing under the default
thresholds); the SAM 2 session that propagates them is real. The generator
itself is tested in tests/tracking (test_generator_parity.py, test_mask_ops.py).
"""

from __future__ import annotations

import csv
import re
from dataclasses import replace

import numpy as np
import pytest
import tifffile
import torch

import napari_sam2.cli.app as cli
from napari_sam2 import build_model
from napari_sam2.evaluation.synthetic import make_timelapse
from napari_sam2.tracking import export
from napari_sam2.tracking.mask_generator import GeneratedMasks


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("track")
    tl = make_timelapse(n_frames=6, shape=(96, 96), n_cells=4, seed=10002)
    tifffile.imwrite(root / "img.tif", tl.image, photometric="minisblack")
    torch.manual_seed(0)
    torch.save(
        {"model": build_model("sam2.1_hiera_tiny", image_size=64).state_dict()}, root / "m.pt"
    )
    return root, tl


@pytest.fixture
def oracle_generator(data, monkeypatch):
    _, tl = data
    frames = {f.tobytes(): t for t, f in enumerate(tl.image)}

    class Oracle:
        def __init__(self, model, cfg):
            pass

        def generate(self, frame, **kwargs):
            lab = tl.labels[frames[np.asarray(frame).tobytes()]]
            ids = [i for i in np.unique(lab) if i]
            n = len(ids)
            return GeneratedMasks(
                np.stack([lab == i for i in ids]), np.ones(n, np.float32),
                np.ones(n, np.float32), np.zeros((n, 4), np.int64),
                np.zeros((n, 2), np.float32), np.zeros((n, 4), np.int64),
            )  # fmt: skip

    monkeypatch.setattr("napari_sam2.tracking.tracker.MaskGenerator", Oracle)


def _track(root, out, *extra, input=None):
    return cli.main(
        ["track", str(input or root / "img.tif"), "--model", str(root / "m.pt"), "--out", str(out)]
        + ["--image-size", "64", "--device", "cpu", "--quiet", *extra]
    )


def _one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-sam2: error: "), lines
    return lines[0]


def test_track_writes_tiff_and_ctc(data, tmp_path, oracle_generator, capsys):
    root, tl = data
    assert _track(root, tmp_path / "labels.tif") == 0, capsys.readouterr().err
    labels = tifffile.imread(tmp_path / "labels.tif")
    assert labels.shape == tl.labels.shape and labels.dtype == np.int32
    assert set(np.unique(labels[0])) == set(np.unique(tl.labels[0]))  # seeded from frame 0

    assert _track(root, tmp_path / "ctc", "--format", "ctc") == 0
    assert (tmp_path / "ctc" / "res_track.txt").exists()
    assert len(list((tmp_path / "ctc").glob("mask*.tif"))) == 6

    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctc", "labels.tif"]

    # Without --quiet the summary counts what was written, in agreement.
    capsys.readouterr()
    argv = ["track", str(root / "img.tif"), "--model", str(root / "m.pt")]
    argv += ["--out", str(tmp_path / "loud.tif"), "--image-size", "64", "--device", "cpu"]
    assert cli.main(argv) == 0
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    n = len(np.unique(tifffile.imread(tmp_path / "loud.tif"))) - 1
    assert re.search(rf": 6 frames, {n} tracks?, \d+ divisions?, ", summary), summary


@pytest.mark.slow
def test_track_writes_geff_and_csv(data, tmp_path, oracle_generator, capsys):
    root, _ = data
    assert _track(root, tmp_path / "t.geff", "--format", "geff", "--frames", "1:5") == 0
    lineage = export.read_geff_lineage(tmp_path / "t.geff")
    assert lineage and max(e for _, e, _ in lineage.values()) <= 3

    assert _track(root, tmp_path / "t.csv", "--format", "csv", "--detect-every", "2") == 0
    with (tmp_path / "t.csv").open() as fh:
        assert next(csv.reader(fh)) == list(export.TABLE_COLUMNS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.geff"]


def test_no_cells_found_is_exit_2_without_output(data, tmp_path, capsys):
    root, _ = data
    assert _track(root, tmp_path / "x.tif") == 2  # random weights: nothing passes the thresholds
    assert "no cells found" in _one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_bad_input_is_exit_2_one_line(data, tmp_path, capsys):
    root, _ = data
    out = tmp_path / "x.tif"
    stack4d = tmp_path / "zt.npy"
    np.save(stack4d, np.zeros((3, 8, 32, 32), np.uint16))
    assert _track(root, out, input=stack4d) == 2
    assert "channel axis" in _one_error_line(capsys)
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    assert _track(root, out, input=bad) == 2
    assert "bad.tif" in _one_error_line(capsys)
    assert _track(root, tmp_path / "missing" / "x.tif") == 2
    assert "does not exist" in _one_error_line(capsys)
    existing = tmp_path / "old.tif"
    existing.write_bytes(b"keep me")
    assert _track(root, existing) == 2
    assert "already exists" in _one_error_line(capsys)
    assert existing.read_bytes() == b"keep me"
    assert _track(root, out, "--frames", "4:2") == 2
    assert "--frames" in _one_error_line(capsys)
    assert _track(root, out, "--pred-iou-thresh", "2") == 2
    assert "[0, 1]" in _one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tif", "old.tif", "zt.npy"]


def test_no_divisions_and_clicks_reach_the_tracker(data, tmp_path, oracle_generator, monkeypatch):
    from napari_sam2.tracking import tracker
    from napari_sam2.tracking.decisions import generator_for

    seen, generators = [], []
    track_all = tracker.track_all

    def spy(net, frames, cfg, **kw):
        seen.append((cfg.divisions, cfg.dim_ratio, cfg.round_aspect))
        generators.append(cfg.generator)
        return track_all(net, frames, cfg, **kw)

    monkeypatch.setattr(tracker, "track_all", spy)
    root, _ = data
    assert _track(root, tmp_path / "a.csv", "--format", "csv", "--frames", "1:3") == 0
    assert (
        _track(root, tmp_path / "b.csv", "--format", "csv", "--frames", "1:3", "--no-divisions")
        == 0
    )
    assert seen == [(True, 0.8, None), (False, 0.8, None)]
    assert generators == [generator_for("peaks")] * 2
    cue = ("--division-cue", "rounding")
    assert _track(root, tmp_path / "r.csv", "--format", "csv", "--frames", "1:3", *cue) == 0
    assert seen[-1] == (True, None, 1.3)
    args = ("--format", "csv", "--frames", "1:3", "--clicks", "grid", "--points-per-side", "8")
    assert _track(root, tmp_path / "c.csv", *args) == 0
    assert generators[-1] == replace(generator_for("grid"), points_per_side=8)
