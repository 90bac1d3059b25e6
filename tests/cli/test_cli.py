"""The napari-sam2 command line: end to end on a synthetic stack, and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

import napari_sam2.cli.app as cli
from napari_sam2 import build_model
from napari_sam2.evaluation.synthetic import make_timelapse
from napari_sam2.files.atomic import umask as _umask
from napari_sam2.files.prompt_files import BoxRow, PointRow, write_boxes_csv, write_points_csv

OLD = b"an existing output file that must survive every failure\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A synthetic uint16 stack, its ground truth, prompts and a random-init checkpoint."""
    root = tmp_path_factory.mktemp("cli")
    tl = make_timelapse(n_frames=4, shape=(96, 96), n_cells=3, seed=0)
    tifffile.imwrite(root / "img.tif", tl.image, photometric="minisblack")
    tifffile.imwrite(root / "gt.tif", tl.labels, photometric="minisblack")
    points = []
    for obj in (1, 2, 3):
        row, col = np.argwhere(tl.labels[1] == obj).mean(0)
        points.append(PointRow(1, float(round(row)), float(round(col)), 1, obj))
    write_points_csv(root / "points.csv", points)
    torch.manual_seed(0)
    model = build_model("sam2.1_hiera_tiny", image_size=256)
    torch.save({"model": model.state_dict()}, root / "ckpt.pt")
    return {"root": root, "tl": tl, "model": model, "points": points}


@pytest.fixture
def out(tmp_path):
    """An existing output file, to check that failures leave it byte-identical."""
    path = tmp_path / "labels.tif"
    path.write_bytes(OLD)
    return path


def _segment(data, out, *extra, prompts=None, model=None, input=None):
    root = data["root"]
    return cli.main(
        [
            "segment",
            str(input or root / "img.tif"),
            "--prompts",
            str(prompts or root / "points.csv"),
            "--model",
            str(model or root / "ckpt.pt"),
            "--out",
            str(out),
            "--image-size",
            "256",
            "--device",
            "cpu",
            *extra,
        ]
    )


def _only_out_left(folder: Path, *names):
    """No temporary files are left next to the output."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("napari-sam2: error: ")
    return lines[0]


# --------------------------------------------------------------------------- end to end


def test_segment_writes_imagej_int32_labels(data, out, capsys):
    code = _segment(data, out, "--direction", "both")
    err = capsys.readouterr().err
    assert code == 0, err
    assert "frames/s" in err and "ETA" in err  # the progress bar
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej
        assert tif.series[0].axes == "TYX"
        assert tif.imagej_metadata["frames"] == 4
        labels = tif.asarray()
    assert labels.shape == (4, 96, 96) and labels.dtype == np.int32
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    _only_out_left(out.parent, out.name)
    # Not mkstemp's private 0600: the mode a plainly created file gets.
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_segment_npy_time_axis_frames_prompt_folder_ctc(data, tmp_path, monkeypatch, capsys):
    """.npy with time last, --frames, a prompts folder (points, boxes, masks), CTC output."""
    monkeypatch.setattr(cli, "_load_model", lambda *args, **kwargs: data["model"])
    tl = data["tl"]
    np.save(tmp_path / "img.npy", np.moveaxis(tl.image, 0, -1))  # (H, W, T)
    prompts = tmp_path / "session"
    prompts.mkdir()
    points = [PointRow(2, p.row, p.col, 1, p.obj) for p in data["points"] if p.obj == 1]
    write_points_csv(prompts / "points.csv", points)
    rows, cols = np.nonzero(tl.labels[2] == 2)
    write_boxes_csv(
        prompts / "boxes.csv", [BoxRow(2, rows.min(), cols.min(), rows.max(), cols.max(), 2)]
    )
    masks = np.where(tl.labels == 3, 3, 0).astype(np.int32)
    masks[[0, 1, 2]] = 0  # a mask prompt for object 3 on frame 3 only
    tifffile.imwrite(prompts / "mask_prompts.tif", masks, photometric="minisblack")
    res = tmp_path / "01_RES"
    code = _segment(
        data,
        res,
        "--format",
        "ctc",
        "--time-axis",
        "-1",
        "--frames",
        "2:4",
        "--direction",
        "forward",
        "--quiet",
        input=tmp_path / "img.npy",
        prompts=prompts,
    )
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().err == ""  # --quiet
    assert sorted(p.name for p in res.iterdir()) == ["mask000.tif", "mask001.tif", "res_track.txt"]
    frame = tifffile.imread(res / "mask000.tif")
    assert frame.shape == (96, 96) and set(np.unique(frame)) <= {0, 1, 2, 3}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_runtime_failure_is_exit_1_and_keeps_output(data, out, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_load_model", lambda *args, **kwargs: data["model"])

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory\nwith details")

    # Fails after the model is loaded and the temporary output exists.
    monkeypatch.setattr("napari_sam2.engine.replay.apply_prompts", broken)
    assert _segment(data, out, "--quiet") == 1
    assert "RuntimeError: out of memory with details" in _one_error_line(capsys)
    assert out.read_bytes() == OLD
    _only_out_left(out.parent, out.name)


# --------------------------------------------------------------------------- bad input


def _write_prompts(tmp_path, text):
    path = tmp_path / "prompts.csv"
    path.write_text(text)
    return {"prompts": path}


def _truncated_tiff(tmp_path, data):
    raw = (data["root"] / "img.tif").read_bytes()
    path = tmp_path / "cut.tif"
    path.write_bytes(raw[: len(raw) // 2])
    return {"input": path}


def _garbage(tmp_path, name, key, content=b"this is not what it claims to be\n"):
    path = tmp_path / name
    path.write_bytes(content)
    return {key: path}


def _truncated_checkpoint(tmp_path, data):
    path = tmp_path / "cut.pt"
    with open(data["root"] / "ckpt.pt", "rb") as f:
        path.write_bytes(f.read(1 << 16))
    return {"model": path}


BAD_INPUT = {
    "missing input": (lambda t, d: {"input": t / "nope.tif"}, "no such file"),
    "truncated tiff": (_truncated_tiff, "truncated"),
    "unreadable tiff": (lambda t, d: _garbage(t, "x.tif", "input"), "cannot read the TIFF"),
    "point outside the image": (
        lambda t, d: _write_prompts(t, "frame,row,col,label,object\n0,120,5,1,1\n"),
        "outside the image of 96 x 96",
    ),
    "frame that does not exist": (
        lambda t, d: _write_prompts(t, "frame,row,col,label,object\n4,10,5,1,1\n"),
        "frame that does not exist",
    ),
    "unknown object column": (
        lambda t, d: _write_prompts(t, "frame,row,col,label,cell\n0,10,5,1,1\n"),
        "lacks column 'object'",
    ),
    "non-integer object": (
        lambda t, d: _write_prompts(t, "frame,row,col,label,object\n0,10,5,1,cell_a\n"),
        "line 2, column 'object'",
    ),
    "corrupt checkpoint": (lambda t, d: _garbage(t, "bad.pt", "model"), "checkpoint: cannot read"),
    "truncated checkpoint": (_truncated_checkpoint, "checkpoint: cannot read"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exit_2_one_line_output_untouched(data, out, tmp_path, capsys, case):
    make, expected = BAD_INPUT[case]
    kwargs = make(tmp_path, data)
    assert _segment(data, out, **kwargs) == 2
    line = _one_error_line(capsys)
    assert expected in line, line
    assert out.read_bytes() == OLD
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_unwritable_output_is_exit_2(data, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_bytes(OLD)
    for target, expected in [
        (tmp_path / "missing" / "out.tif", "does not exist"),
        (blocker / "out.tif", "is not a folder"),
        (tmp_path, "is a folder"),
    ]:
        assert _segment(data, target, "--quiet") == 2
        assert expected in _one_error_line(capsys)
    assert blocker.read_bytes() == OLD
    _only_out_left(tmp_path, "file")


def test_prompt_outside_frames_and_usage_errors(data, out, capsys):
    assert _segment(data, out, "--frames", "2:4") == 2
    assert "outside the selected frames 2:4" in _one_error_line(capsys)
    assert _segment(data, out, "--frames", "3:9") == 2
    assert "--frames" in _one_error_line(capsys)
    assert _segment(data, out, "--direction", "sideways") == 2
    assert "invalid choice" in _one_error_line(capsys)
    assert cli.main(["segment", "x.tif"]) == 2
    assert "required" in _one_error_line(capsys)
    assert out.read_bytes() == OLD


def test_debug_shows_traceback(data, out, tmp_path, capsys):
    assert _segment(data, out, "--debug", **_garbage(tmp_path, "bad.pt", "model")) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("napari-sam2: error:")


# --------------------------------------------------------------------------- other commands


def test_help_in_a_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "napari_sam2.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("segment", "models", "view", "evaluate"):
        assert command in proc.stdout


def test_models_lists_cache_and_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NAPARI_SAM2_CACHE", str(tmp_path))
    (tmp_path / "sam2.1_hiera_tiny.pt").write_bytes(b"x")
    assert cli.main(["models"]) == 0
    listing = capsys.readouterr().out
    assert str(tmp_path) in listing
    cached = {line.split()[0]: line.split()[-2] for line in listing.splitlines()[2:]}
    from napari_sam2.weights import registry

    # The eight official checkpoints, and the bundled model where the package carries it.
    assert len(cached) == 8 + registry.HAS_BUNDLED
    assert cached["sam2.1_hiera_tiny"] == "yes" and cached["sam2_hiera_large"] == "no"
    assert cached.get("sam2_micro_cells", "bundled") == "bundled"

    calls = []

    def fake_download(entry, progress=None, **kwargs):
        progress(entry.size // 2, entry.size)
        progress(entry.size, entry.size)
        calls.append(entry.name)
        return tmp_path / entry.filename

    monkeypatch.setattr("napari_sam2.weights.registry.download", fake_download)
    assert cli.main(["models", "--download", "sam2_hiera_small"]) == 0
    captured = capsys.readouterr()
    assert calls == ["sam2_hiera_small"]
    assert captured.out.strip() == str(tmp_path / "sam2_hiera_small.pt")
    assert "MB/s" in captured.err
    assert cli.main(["models", "--download", "sam3_giant"]) == 2
    assert "unknown checkpoint name" in _one_error_line(capsys)


def test_view_arguments_only():
    parser = cli.build_parser()
    args = parser.parse_args(["view"])
    assert args.func is cli._cmd_view and args.input is None
    args = parser.parse_args(["view", "stack.tif", "--time-axis", "2"])
    assert args.input == "stack.tif" and args.time_axis == 2


def test_evaluate_table_json_and_ctc(data, tmp_path, capsys):
    gt = data["tl"].labels
    pred = gt.copy()
    pred[2][pred[2] == 2] = 0  # object 2 missed on frame 2
    tifffile.imwrite(tmp_path / "pred.tif", pred, photometric="minisblack")
    report = tmp_path / "scores.json"
    args = ["evaluate", str(tmp_path / "pred.tif"), str(data["root"] / "gt.tif")]
    assert cli.main([*args, "--json", str(report), "--ctc"]) == 0
    table = capsys.readouterr().out
    assert "J&F" in table and "mean" in table and "SEG" in table
    scores = json.loads(report.read_text())
    assert scores["J"]["1"] == 1.0 and scores["J"]["2"] < 1.0
    assert 0 < scores["JF_mean"] < 1 and 0 < scores["ctc"]["SEG"] < 1

    assert cli.main([*args, "--skip-first-last"]) == 0
    assert "mean" in capsys.readouterr().out
    tifffile.imwrite(tmp_path / "small.tif", pred[:, :50], photometric="minisblack")
    assert cli.main(["evaluate", str(tmp_path / "small.tif"), str(data["root"] / "gt.tif")]) == 2
    assert "does not match" in _one_error_line(capsys)


# --------------------------------------------------------------------------- helpers


def test_progress_text():
    import io

    stream = io.StringIO()
    bar = cli.Progress(10, "segment", stream=stream, log_interval=0)
    bar.update(4)
    bar.close()
    text = stream.getvalue()
    assert "4/10 frames" in text and "frames/s" in text and "ETA" in text
    assert cli.parse_frame_range(":2", 5) == (0, 2) and cli.parse_frame_range("3:", 5) == (3, 5)


def test_dtype_bf16_refused_before_loading_on_a_cpu_without_it(data, out, monkeypatch, capsys):
    from napari_sam2.engine import precision

    loads = []
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(cli, "_load_model", lambda *a, **k: loads.append(a))
    assert _segment(data, out, "--dtype", "bfloat16") == 2
    assert "dtype: 'bfloat16' needs a CPU with bf16" in _one_error_line(capsys)
    assert not loads and out.read_bytes() == OLD


def test_dtype_reaches_the_session(data, out, monkeypatch, capsys):
    from napari_sam2.engine import session as video

    seen = []
    original = video.VideoSession.__init__

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("dtype"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(video.VideoSession, "__init__", spy)
    monkeypatch.setattr(cli, "_load_model", lambda *a, **k: data["model"])
    assert _segment(data, out, "--dtype", "float32", "--quiet") == 0, capsys.readouterr().err
    assert seen == ["float32"]
