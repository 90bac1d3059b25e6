"""The one stack wrapper: frames along any axis, lazily, and stacks read from files."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam2.errors import InputError
from napari_sam2.files.stacks import Stack, read_stack


def test_stack_reads_frames_along_any_axis():
    data = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    view = Stack(data, axis=2)
    assert view.shape == (4, 2, 3) and view.num_frames == 4 and view.frame_shape == (2, 3)
    np.testing.assert_array_equal(view[1], data[:, :, 1])
    np.testing.assert_array_equal(view.frames(1, 3)[0], data[:, :, 1])
    rgb = Stack(np.zeros((5, 6, 7, 3)), axis=0, rgb=True)
    assert rgb.shape == (5, 6, 7, 3) and rgb.channel_axis == 3 and rgb.frame_shape == (6, 7)
    with pytest.raises(InputError, match="3D"):
        Stack(np.zeros((2, 3, 4, 5)), axis=0)
    with pytest.raises(InputError, match="stack axis"):
        Stack(np.zeros((2, 3, 4)), axis=3)


def test_read_stack_folder_natural_order_and_channels(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in (0, 2, 10):
        tifffile.imwrite(folder / f"frame{t}.tif", np.full((8, 9), t, np.uint16))
    (folder / "notes.txt").write_text("ignored")
    stack = read_stack(folder)
    assert stack.data.shape == (3, 8, 9) and stack.frame_shape == (8, 9)
    assert [int(stack.data[t][0, 0]) for t in range(3)] == [0, 2, 10]
    assert stack.frames(1, 3).data[0][0, 0] == 2

    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((5, 8, 9, 3), np.uint8), photometric="rgb")
    rgb = read_stack(tmp_path / "rgb.tif")
    assert rgb.channel_axis == 3 and rgb.frame_shape == (8, 9)
    np.save(tmp_path / "tchw.npy", np.zeros((5, 2, 8, 9), np.float32))
    # Axis 1 may hold channels or z: it is named, never guessed.
    with pytest.raises(InputError, match="--channel-axis"):
        read_stack(tmp_path / "tchw.npy")
    assert read_stack(tmp_path / "tchw.npy", channel_axis=1).channel_axis == 1
    tifffile.imwrite(tmp_path / "one.tif", np.zeros((8, 9), np.uint16))
    assert read_stack(tmp_path / "one.tif").num_frames == 1
