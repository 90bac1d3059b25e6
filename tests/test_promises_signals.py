"""Promise: a job a scheduler stops leaves nothing behind (issue 15, case 7).

SIGTERM (what SLURM and friends send) during ``napari-sam2 segment`` cleans up
like Ctrl-C: the temporary full-size output and the spill folder go, an
existing output stays as it was, and the exit status is 143 with one line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

import napari_sam2
from napari_sam2 import build_model
from napari_sam2.files.prompt_files import PointRow, write_points_csv


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_during_segment_cleans_up_like_ctrl_c(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 4000, (40, 64, 64), dtype=np.uint16)
    tifffile.imwrite(work / "stack.tif", stack, photometric="minisblack")
    write_points_csv(work / "points.csv", [PointRow(0, 30, 30, 1, 1)])
    torch.manual_seed(0)
    torch.save({"model": build_model("sam2.1_hiera_tiny", 256).state_dict()}, work / "m.pt")
    (work / "labels.tif").write_bytes(b"an earlier result that must survive")
    temp = tmp_path / "tmp"
    temp.mkdir()
    src = str(Path(napari_sam2.__file__).parents[1])
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    args = ["segment", str(work / "stack.tif"), "--prompts", str(work / "points.csv")]
    args += ["--model", str(work / "m.pt"), "--out", str(work / "labels.tif")]
    args += ["--device", "cpu", "--image-size", "256", "--direction", "forward"]
    code = "import sys; from napari_sam2.cli.app import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], env=env, stderr=subprocess.PIPE, text=True
    )
    lines = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("segment"):  # the progress bar: frames are being computed
            break
    assert any(x.startswith("segment") for x in lines), "".join(lines)
    assert any(p.name.startswith("napari-sam2-") for p in temp.iterdir())  # the spill folder
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 143, "".join(lines) + rest
    assert "terminated" in rest and "Traceback" not in rest, rest
    assert sorted(p.name for p in work.iterdir()) == ["labels.tif", "m.pt", "points.csv",
                                                      "stack.tif"]  # fmt: skip
    assert (work / "labels.tif").read_bytes() == b"an earlier result that must survive"
    assert list(temp.iterdir()) == []
