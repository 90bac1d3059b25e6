"""Promise: napari-sam2 never writes over, into or around what it reads (issue 15, case 1).

Every command line output goes through :mod:`napari_sam2.files.output_rules`: an
output never equals, contains or sits inside an input, and a CTC result folder
is new, empty, or a previous result. Each refusal is one line, exit 2, before
any compute, and every input stays byte-identical.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

import napari_sam2.cli.app as cli
from napari_sam2 import build_model
from napari_sam2.errors import InputError
from napari_sam2.evaluation.synthetic import make_timelapse
from napari_sam2.files.output_rules import (
    check_not_input,
    check_result_folder,
    check_session_folder,
)
from napari_sam2.files.prompt_files import PointRow, write_points_csv


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("sam2.1_hiera_tiny", image_size=256)


@pytest.fixture
def inputs(tmp_path, model, monkeypatch):
    """A 3-frame stack, points, mask prompts and a checkpoint file in one folder."""
    monkeypatch.setattr(cli, "_load_model", lambda *args, **kwargs: model)
    tl = make_timelapse(n_frames=3, shape=(48, 48), n_cells=2, seed=0)
    tifffile.imwrite(tmp_path / "stack.tif", tl.image, photometric="minisblack")
    row, col = np.argwhere(tl.labels[0] == 1).mean(0)
    write_points_csv(tmp_path / "points.csv", [PointRow(0, round(row), round(col), 1, 1)])
    masks = np.where(tl.labels == 2, 2, 0).astype(np.int32)
    masks[1:] = 0
    tifffile.imwrite(tmp_path / "masks.tif", masks, photometric="minisblack")
    (tmp_path / "m.pt").write_bytes(b"stands in for a checkpoint")
    return tmp_path


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _segment(root: Path, out, *extra, prompts="points.csv", input="stack.tif") -> int:
    args = ["segment", str(root / input), "--prompts", str(root / prompts)]
    args += ["--model", str(root / "m.pt"), "--out", str(out), "--device", "cpu", *extra]
    return cli.main(args)


def _refused(capsys, *words) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("napari-sam2: error: ")
    for word in words:
        assert word in err, err
    return err


def test_segment_never_overwrites_its_input_stack(inputs, capsys):
    before = _digests(inputs)
    assert _segment(inputs, inputs / "stack.tif") == 2
    _refused(capsys, "--out", "is an input")
    assert _digests(inputs) == before


def test_segment_never_overwrites_its_mask_prompts(inputs, capsys):
    before = _digests(inputs)
    assert _segment(inputs, inputs / "masks.tif", prompts="masks.tif") == 2
    _refused(capsys, "--out", "is an input")
    assert _digests(inputs) == before


def test_segment_never_overwrites_its_checkpoint_or_a_link_to_an_input(inputs, capsys):
    before = _digests(inputs)
    assert _segment(inputs, inputs / "m.pt") == 2
    _refused(capsys, "is an input")
    os.link(inputs / "stack.tif", inputs / "hardlink.tif")
    (inputs / "symlink.tif").symlink_to(inputs / "stack.tif")
    for name in ("hardlink.tif", "symlink.tif"):
        assert _segment(inputs, inputs / name) == 2
        _refused(capsys, "is an input")
    assert _digests(inputs) == before | {"hardlink.tif": before["stack.tif"]} | {
        "symlink.tif": before["stack.tif"]
    }


def test_evaluate_never_turns_an_input_into_json(inputs, capsys):
    tl = make_timelapse(n_frames=3, shape=(48, 48), n_cells=2, seed=0)
    tifffile.imwrite(inputs / "pred.tif", tl.labels, photometric="minisblack")
    tifffile.imwrite(inputs / "gt.tif", tl.labels, photometric="minisblack")
    before = _digests(inputs)
    for target in ("pred.tif", "gt.tif"):
        code = cli.main(["evaluate", str(inputs / "pred.tif"), str(inputs / "gt.tif"),
                         "--json", str(inputs / target)])  # fmt: skip
        assert code == 2
        _refused(capsys, "--json", "is an input")
    assert _digests(inputs) == before


def test_ctc_output_never_lands_in_the_input_frames_folder(inputs, capsys):
    frames = inputs / "frames"
    frames.mkdir()
    stack = tifffile.imread(inputs / "stack.tif")
    for t, frame in enumerate(stack):
        # Input frames named like CTC masks: the worst case for an overwrite.
        tifffile.imwrite(frames / f"mask{t:03d}.tif", frame, photometric="minisblack")
    before = _digests(inputs)
    assert _segment(inputs, frames, "--format", "ctc", input="frames") == 2
    _refused(capsys, "is an input")
    # Nor a folder inside it, nor a folder that contains the input.
    assert _segment(inputs, frames / "res", "--format", "ctc", input="frames") == 2
    _refused(capsys, "inside the input folder")
    assert _segment(inputs, inputs, "--format", "ctc", input="frames") == 2
    _refused(capsys, "contains the input")
    assert _digests(inputs) == before
    assert len(list(frames.iterdir())) == 3


def test_ctc_output_never_writes_into_a_folder_of_user_files(inputs, capsys):
    res = inputs / "01_RES"
    res.mkdir()
    (res / "notes.txt").write_text("my notes")
    (res / "mask000.tif").write_bytes(b"not ours either way")
    before = _digests(inputs)
    assert _segment(inputs, res, "--format", "ctc") == 2
    _refused(capsys, "notes.txt", "not a CTC result")
    assert _digests(inputs) == before


def test_ctc_output_replaces_a_previous_result_of_ours(inputs, capsys):
    res = inputs / "01_RES"
    assert _segment(inputs, res, "--format", "ctc", "--quiet") == 0, capsys.readouterr().err
    first = sorted(p.name for p in res.iterdir())
    assert first == ["mask000.tif", "mask001.tif", "mask002.tif", "res_track.txt"]
    assert _segment(inputs, res, "--format", "ctc", "--quiet") == 0, capsys.readouterr().err
    assert sorted(p.name for p in res.iterdir()) == first


# --------------------------------------------------------------------------- the rule itself


def test_output_rule_equal_contains_inside(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.tif").write_bytes(b"x")
    with pytest.raises(InputError, match="is an input"):
        check_not_input(folder / "a.tif", [folder / "a.tif"])
    with pytest.raises(InputError, match="contains the input"):
        check_not_input(tmp_path, [folder / "a.tif"], "--json")
    with pytest.raises(InputError, match="inside the input folder"):
        check_not_input(folder / "b.tif", [folder])
    # A file next to a file input, and absent inputs or registry names, are fine.
    check_not_input(folder / "b.tif", [folder / "a.tif", None, "sam2.1_hiera_tiny"])


def test_output_rule_result_and_session_folders(tmp_path):
    check_result_folder(tmp_path / "new", "ctc")
    res = tmp_path / "res"
    res.mkdir()
    (res / "mask000.tif").write_bytes(b"")
    (res / "res_track.txt").write_bytes(b"")
    check_result_folder(res, "ctc")
    (res / "raw.tif").write_bytes(b"")
    with pytest.raises(InputError, match="raw.tif"):
        check_result_folder(res, "ctc")
    # Sessions: new, empty, or a session of ours; never a folder of user files or a file.
    check_session_folder(tmp_path / "s1")
    check_session_folder(tmp_path / "new" / "parents" / "s1")  # created with its parents
    empty = tmp_path / "empty"
    empty.mkdir()
    check_session_folder(empty)
    user = tmp_path / "user"
    user.mkdir()
    (user / "labels.tif").write_bytes(b"hand-made")
    with pytest.raises(InputError, match="not a napari-sam2 session"):
        check_session_folder(user)
    (user / "session.json").write_text("{}")
    check_session_folder(user)
    with pytest.raises(InputError, match="is a file"):
        check_session_folder(user / "labels.tif")
