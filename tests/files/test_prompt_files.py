"""The prompts file format: CSV points/boxes, napari exports, mask TIFFs."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam2.errors import InputError
from napari_sam2.files.prompt_files import (
    BoxRow,
    PointRow,
    Prompts,
    check_prompts,
    read_boxes_csv,
    read_points_csv,
    read_prompts,
    select_frames,
    write_boxes_csv,
    write_points_csv,
    write_prompts,
)
from napari_sam2.files.tiff import read_label_tiff, read_tiff_array, write_label_tiff

POINTS = (
    PointRow(0, 10.0, 20.5, 1, 1),
    PointRow(0, 12.0, 22.0, 0, 1),
    PointRow(2, 30.25, 40.0, 1, 7),
)
BOXES = (BoxRow(1, 5.0, 6.0, 25.0, 36.5, 2), BoxRow(0, 0.0, 0.0, 9.0, 9.0, 1))


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- CSV round trips


def test_points_round_trip_and_exact_header(tmp_path):
    path = tmp_path / "points.csv"
    write_points_csv(path, POINTS)
    lines = path.read_text().splitlines()
    assert lines[0] == "frame,row,col,label,object"
    assert lines[1] == "0,10,20.5,1,1"  # whole pixels without ".0"
    assert read_points_csv(path) == POINTS


def test_boxes_round_trip(tmp_path):
    path = tmp_path / "boxes.csv"
    write_boxes_csv(path, BOXES)
    assert path.read_text().splitlines()[0] == "frame,row0,col0,row1,col1,object"
    assert read_boxes_csv(path) == BOXES


def test_columns_in_any_order_extra_columns_blank_lines_and_bom(tmp_path):
    text = "\ufeffObject, label ,col,row,frame,note\n3,1,4.5,2,1,first\n\n3,0,5,6,1,\n"
    rows = read_points_csv(_write(tmp_path / "p.csv", text))
    assert rows == (PointRow(1, 2.0, 4.5, 1, 3), PointRow(1, 6.0, 5.0, 0, 3))


def test_napari_points_export_is_read(tmp_path):
    """A file written by napari's own Points CSV writer (floats everywhere)."""
    write = pytest.importorskip("napari_builtins.io._write").napari_write_points
    data = np.array([[0, 10, 20], [2, 30.5, 40], [2, 31, 41]], float)  # (frame, row, col)
    meta = {"properties": {"label": np.array([1, 0, 1]), "object": np.array([4, 4, 9])}}
    path = write(str(tmp_path / "napari.csv"), data, meta)
    assert open(path).readline().startswith("index,axis-0,axis-1,axis-2")
    assert read_points_csv(path) == (
        PointRow(0, 10.0, 20.0, 1, 4),
        PointRow(2, 30.5, 40.0, 0, 4),
        PointRow(2, 31.0, 41.0, 1, 9),
    )
    assert read_prompts(path).points == read_points_csv(path)


def test_napari_boolean_labels_and_2d_layer(tmp_path):
    text = "index,axis-0,axis-1,label,object\n0,3.0,4.0,True,1\n1,5.0,6.0,False,1\n"
    rows = read_points_csv(_write(tmp_path / "p.csv", text))
    assert rows == (PointRow(0, 3.0, 4.0, 1, 1), PointRow(0, 5.0, 6.0, 0, 1))


BAD_POINTS = [
    ("frame,row,col,label,obj\n0,1,1,1,1\n", ["line 1", "'object'"]),
    ("frame,row,col,label,object\n0,1,1,1,cell_a\n", ["line 2", "column 'object'", "cell_a"]),
    ("frame,row,col,label,object\n0,1,1,1,1\n1.5,1,1,1,1\n", ["line 3", "column 'frame'"]),
    ("frame,row,col,label,object\n-1,1,1,1,1\n", ["line 2", "column 'frame'", "negative"]),
    ("frame,row,col,label,object\n0,1,1,2,1\n", ["line 2", "column 'label'"]),
    ("frame,row,col,label,object\n0,x,1,1,1\n", ["line 2", "column 'row'"]),
    ("frame,row,col,label,object\n0,1,nan,1,1\n", ["line 2", "column 'col'"]),
    ("frame,row,col,label,object\n0,-3,1,1,1\n", ["line 2", "column 'row'", "outside"]),
    ("frame,row,col,label,object\n0,1,1,1,0\n", ["line 2", "column 'object'", "background"]),
    ("frame,row,col,label,object\n0,1,1,1\n", ["line 2", "4 values"]),
    ("frame,row,frame,label,object\n", ["line 1", "twice"]),
    ("\n\n", ["empty"]),
    ("index,axis-0,axis-1,axis-2,label\n0,0,1,1,1\n", ["line 1", "'object'"]),
    ("index,axis-0,axis-1,axis-2,axis-3,label,object\n0,0,0,1,1,1,1\n", ["line 1", "axes"]),
]


@pytest.mark.parametrize(("text", "expected"), BAD_POINTS)
def test_bad_points_file_names_file_line_and_column(tmp_path, text, expected):
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(InputError) as info:
        read_points_csv(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    for part in expected:
        assert part in message


def test_bad_boxes_and_unknown_header(tmp_path):
    path = _write(tmp_path / "b.csv", "frame,row0,col0,row1,col1\n0,1,1,5,5\n")
    with pytest.raises(InputError, match="'object'"):
        read_boxes_csv(path)
    path = _write(tmp_path / "c.csv", "t,y,x\n0,1,1\n")
    with pytest.raises(InputError, match="neither points"):
        read_prompts(path)
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(InputError, match="not a text CSV"):
        read_points_csv(tmp_path / "bin.csv")
    with pytest.raises(InputError, match="no such file"):
        read_points_csv(tmp_path / "missing.csv")


# --------------------------------------------------------------------------- folders and TIFFs


def test_folder_round_trip_with_masks(tmp_path):
    masks = np.zeros((3, 16, 20), np.int32)
    masks[1, 2:6, 3:9] = 5
    masks[1, 10:12, 10:12] = 6
    prompts = Prompts(list(POINTS), list(BOXES), masks)
    assert isinstance(prompts.points, tuple)
    write_prompts(tmp_path / "session", prompts)
    back = read_prompts(tmp_path / "session")
    assert back == prompts
    assert back.obj_ids() == (1, 2, 5, 6, 7)
    assert back.frames() == (0, 1, 2)
    with tifffile.TiffFile(tmp_path / "session" / "mask_prompts.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "TYX"
    # Without masks a stale mask file must go, or it would come back on reading.
    write_prompts(tmp_path / "session", Prompts(POINTS))
    assert not (tmp_path / "session" / "mask_prompts.tif").exists()
    assert read_prompts(tmp_path / "session") == Prompts(POINTS, (), None)


def test_read_prompts_folder_without_files_and_tif_file(tmp_path):
    with pytest.raises(InputError, match="holds none of"):
        read_prompts(tmp_path)
    masks = np.zeros((2, 8, 8), np.uint16)
    masks[1, :2, :2] = 3
    tifffile.imwrite(tmp_path / "m.tif", masks)
    got = read_prompts(tmp_path / "m.tif")
    assert got.points == () and got.masks.shape == (2, 8, 8) and got.obj_ids() == (3,)


def test_label_tiff_single_frame_and_float_rejected(tmp_path):
    write_label_tiff(tmp_path / "one.tif", np.ones((8, 9), np.int64))
    assert read_label_tiff(tmp_path / "one.tif").shape == (1, 8, 9)
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((2, 8, 8), np.float32))
    with pytest.raises(InputError, match="integer"):
        read_label_tiff(tmp_path / "f.tif")


def _truncate(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path.stat().st_size


@pytest.mark.parametrize("layout", ["shaped", "imagej", "pages"])
def test_truncated_tiff_is_rejected_and_left_alone(tmp_path, layout):
    stack = np.arange(4 * 32 * 32, dtype=np.uint16).reshape(4, 32, 32)
    path = tmp_path / "t.tif"
    if layout == "pages":
        with tifffile.TiffWriter(path) as w:
            for frame in stack:
                w.write(frame, contiguous=False, metadata=None)
    else:
        tifffile.imwrite(path, stack, imagej=layout == "imagej", photometric="minisblack")
    size = _truncate(path, 0.6)
    with pytest.raises(InputError, match="truncated|damaged") as info:
        read_tiff_array(path, mmap=True)
    assert "\n" not in str(info.value)
    # tifffile.memmap's default mode would have grown the file to full length.
    assert path.stat().st_size == size


# --------------------------------------------------------------------------- checking and applying


def test_check_and_select_frames():
    masks = np.zeros((4, 8, 8), np.int32)
    masks[2, 0, 0] = 1
    prompts = Prompts((PointRow(2, 7, 7, 1, 1),), (BoxRow(3, 0, 0, 7, 7, 2),), masks)
    check_prompts(prompts, 4, (8, 8))
    with pytest.raises(InputError, match="outside the image"):
        check_prompts(prompts, 4, (7, 8))
    with pytest.raises(InputError, match="mask prompts have shape"):
        check_prompts(prompts, 4, (8, 9))
    part = select_frames(prompts, 2, 4)
    assert part.points[0].frame == 0 and part.boxes[0].frame == 1
    assert part.masks.shape == (2, 8, 8) and part.frames() == (0, 1)
    with pytest.raises(InputError, match="mask prompt on frame 2"):
        select_frames(Prompts(masks=masks), 3, 4)
