"""Promise: every bad input to the Python API is one napari_sam2 error, before any compute.

Issue 15, cases 5 (object ids), 6 (prompt changes and close() during
propagate), 9 (4D stacks are never misread) and 10 (messages that help).
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import tifffile
import torch

from napari_sam2 import (
    CheckpointError,
    ImagePredictor,
    InputError,
    VideoSession,
    build_model,
    load_model,
)
from napari_sam2.cli import app as cli
from napari_sam2.engine.frames import FrameSource


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("sam2.1_hiera_tiny", image_size=256)


def _frames(t=4, h=40, w=48):
    yy, xx = np.mgrid[:h, :w]
    out = np.zeros((t, h, w), np.uint16)
    for i in range(t):
        out[i] = 100 + 1000 * (((yy - 20) ** 2 + (xx - 20 - i) ** 2) < 60)
    return out


# --------------------------------------------------------------------------- case 5


@pytest.mark.parametrize("bad", [0, -3, 2**40, True, 1.0, "1"])
def test_object_ids_are_label_values_or_refused(model, bad):
    with VideoSession(model, _frames()) as session:
        for call in (
            lambda: session.add_points(0, bad, [(20, 20)], [1]),
            lambda: session.add_box(0, bad, (10, 10, 30, 30)),
            lambda: session.add_mask(0, bad, np.ones((40, 48), bool)),
        ):
            with pytest.raises(InputError, match="obj_id"):
                call()
        assert session.obj_ids == ()  # nothing was computed or remembered
    with VideoSession(model, _frames()) as session:
        result = session.add_points(0, 2**31 - 1, [(20, 20)], [1])  # the largest int32 label
        assert result.obj_ids == (2**31 - 1,) and result.label_image().dtype == np.int32


# --------------------------------------------------------------------------- case 6


def test_a_new_object_during_propagate_ends_the_iterator_cleanly(model):
    with VideoSession(model, _frames()) as session:
        session.add_points(0, 1, [(20, 20)], [1])
        frames = session.propagate()
        assert next(frames).frame == 0
        session.add_points(1, 2, [(20, 22)], [1])  # allowed; the open iterator ends
        assert list(frames) == []
        results = list(session.propagate(0))
        assert [r.frame for r in results] == [0, 1, 2, 3]
        assert results[-1].obj_ids == (1, 2)


def test_a_closed_session_ends_its_iterator_and_refuses_use(model):
    session = VideoSession(model, _frames())
    session.add_points(0, 1, [(20, 20)], [1])
    frames = session.propagate()
    next(frames)
    session.close()
    assert list(frames) == []  # ends cleanly, no "cannot schedule new futures"
    for call in (
        lambda: session.add_points(1, 1, [(20, 20)], [1]),
        lambda: list(session.propagate()),
        lambda: session.segment(),
    ):
        with pytest.raises(InputError, match="closed"):
            call()


# --------------------------------------------------------------------------- case 9


def test_a_z_stack_over_time_is_refused_not_read_as_channels(model, tmp_path, monkeypatch, capsys):
    tzyx = np.zeros((3, 3, 48, 40), np.uint16)
    with pytest.raises(InputError, match=r"\(T, Z, Y, X\)"):
        VideoSession(model, tzyx)
    # One time point (Z as the stack) or one plane works.
    with VideoSession(model, tzyx[0]) as session:
        assert session.num_frames == 3
    # The command line names the axes and how to choose, and exits 2.
    monkeypatch.setattr(cli, "_load_model", lambda *args, **kwargs: model)
    np.save(tmp_path / "tzyx.npy", tzyx)
    (tmp_path / "points.csv").write_text("frame,row,col,label,object\n0,5,5,1,1\n")
    code = cli.main(["segment", str(tmp_path / "tzyx.npy"), "--prompts",
                     str(tmp_path / "points.csv"), "--model", "sam2.1_hiera_tiny",
                     "--out", str(tmp_path / "out.tif")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "(T, Z, Y, X)" in err and "--channel-axis" in err, err
    assert not (tmp_path / "out.tif").exists()
    # A TIFF that names its axes TZYX is refused the same way.
    tifffile.imwrite(tmp_path / "tzyx.tif", tzyx, imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(InputError, match="TZYX"):
        cli.read_stack(tmp_path / "tzyx.tif")


# --------------------------------------------------------------------------- case 10


def _checkpoint_error(path) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError) as info:
            load_model(path)
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message
    assert "weights_only" not in message and "weights_only=False" not in message
    assert not [w for w in caught if "napari_sam2" not in str(w.filename)], caught
    return message


class _Evil:
    def __reduce__(self):
        return (print, ("this would have run code",))


def test_checkpoint_messages_say_what_is_wrong(tmp_path):
    (tmp_path / "notes.pt").write_text("hello, these are notes\n")
    assert "not a PyTorch checkpoint" in _checkpoint_error(tmp_path / "notes.pt")
    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump(_Evil(), fh)
    assert "could run code" in _checkpoint_error(tmp_path / "evil.pt")
    torch.save({"model": np.zeros(3)}, tmp_path / "numpy.pt")
    assert "other than tensors" in _checkpoint_error(tmp_path / "numpy.pt")
    (tmp_path / "weights").mkdir()
    assert "is a folder" in _checkpoint_error(tmp_path / "weights")
    assert "got None" in _checkpoint_error(None)


def test_bad_arguments_are_one_line_input_errors(model, tmp_path):
    frames = _frames()
    with pytest.raises(InputError, match="not numeric"):
        VideoSession(model, frames.astype(object))
    for axis in ("x", 1.5, True):
        with pytest.raises(InputError, match="channel_axis"):
            VideoSession(model, np.zeros((2, 40, 48, 3), np.uint8), channel_axis=axis)
    with pytest.raises(InputError, match="channel_axis"):
        FrameSource(np.zeros((2, 40, 48, 3), np.uint8), 256, channel_axis=5)
    predictor = ImagePredictor(model)
    with pytest.raises(InputError, match="not numeric"):
        predictor.set_image(np.zeros((40, 48), object))
    for axis in (5, "x"):
        with pytest.raises(InputError, match="channel_axis"):
            predictor.set_image(np.zeros((40, 48, 3), np.uint8), channel_axis=axis)
    with pytest.raises(InputError, match="fill_hole_area"):
        VideoSession(model, frames, fill_hole_area="a")
    with pytest.raises(InputError, match="spill_dir"):
        VideoSession(model, frames, spill_dir=tmp_path / "missing")
    with VideoSession(model, frames) as session:
        with pytest.raises(InputError, match="points"):
            session.add_points(0, 1, "20, 20", [1])
        with pytest.raises(InputError, match="box"):
            session.add_box(0, 1, "a box")
        session.add_points(0, 1, [(20, 20)], [1])
        with pytest.raises(InputError, match="max_frames"):
            list(session.propagate(0, max_frames=True))
        assert len(list(session.propagate(0, max_frames=np.int64(2)))) == 2
