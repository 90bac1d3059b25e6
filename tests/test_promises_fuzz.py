"""Promise: any input file or array gives a result or one napari_sam2 error (issue 15).

A seeded fuzz test (hypothesis, derandomized, a bounded number of examples)
over the three things users hand-edit or generate: the prompts CSV, the
session JSON, and the frame arrays. Every outcome must be a result or a
:class:`~napari_sam2.errors.Sam2Error`, never another exception, and no input
file may change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_sam2.engine.frames import FrameSource
from napari_sam2.errors import Sam2Error
from napari_sam2.files.prompt_files import (
    PointRow,
    Prompts,
    check_prompts,
    read_prompts,
    write_prompts,
)
from napari_sam2.files.saved_session import read_session
from napari_sam2.files.tiff import write_label_tiff

FUZZ = settings(
    max_examples=80,
    derandomize=True,  # a fixed seed: CI sees the same examples every run
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

CELLS = st.one_of(
    st.integers(-(2**40), 2**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "nan", "inf", "-0", "1e400", "0x10", "1_000", "true", '"3"', "é"]),
    st.text(max_size=6),
)
HEADERS = st.sampled_from(
    [
        "frame,row,col,label,object",
        "frame,row0,col0,row1,col1,object",
        "index,axis-0,axis-1,axis-2,label,object",
        "object,label,col,row,frame,extra",
        "frame,row,row,label,object",
        "",
        "garbage",
    ]
)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: _digest(p) for p in sorted(folder.iterdir())}


@FUZZ
@given(
    header=HEADERS,
    rows=st.lists(st.lists(CELLS, min_size=0, max_size=7), max_size=6),
    raw=st.binary(max_size=40),
)
def test_fuzz_prompts_csv(tmp_path_factory, header, rows, raw):
    folder = tmp_path_factory.mktemp("csv")
    path = folder / "prompts.csv"
    lines = [header, *(",".join(r) for r in rows)]
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + raw)
    before = _digest(path)
    try:
        prompts = read_prompts(path)
        check_prompts(prompts, 5, (40, 40))
    except Sam2Error as exc:
        assert "\n" not in str(exc)
    assert _digest(path) == before


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
GOOD_META = {
    "session_id": "abc",
    "image": {"layer": "cells", "path": None},
    "model": {"source": None, "device": "cpu", "precision": "float32", "image_size": 256},
    "stack_axis": 0,
    "stack_kind": "time",
    "objects": [{"id": 1, "name": "object 1", "frames": [0, 2]}],
    "reached": {"1": [[0, 0]]},
    "selected_label": 1,
}


@FUZZ
@given(
    changes=st.dictionaries(
        st.sampled_from(sorted(GOOD_META) + ["objects", "reached"]), JSON_VALUES, max_size=3
    ),  # fmt: skip
    nested=st.tuples(st.sampled_from(["objects", "reached", "model", "image"]), JSON_VALUES),
    masks_shape=st.sampled_from([None, (3, 16, 16), (3, 8, 16), (2, 16, 16)]),
    cut=st.integers(0, 400) | st.none(),
)
def test_fuzz_session_json(tmp_path_factory, changes, nested, masks_shape, cut):
    folder = tmp_path_factory.mktemp("session")
    meta = {**GOOD_META, **changes}
    key, value = nested
    if isinstance(meta.get(key), dict):
        meta[key] = {**meta[key], "x": value, "id": value}
    elif isinstance(meta.get(key), list) and meta[key]:
        meta[key] = [*meta[key], value]
    text = json.dumps(meta, allow_nan=True)
    (folder / "session.json").write_text(text[:cut] if cut is not None else text)
    write_label_tiff(folder / "labels.tif", np.zeros((3, 16, 16), np.int32))
    masks = None if masks_shape is None else np.zeros(masks_shape, np.int32)
    write_prompts(folder, Prompts((PointRow(0, 3, 3, 1, 1),), (), masks))
    before = _digests(folder)
    try:
        saved = read_session(folder)
        assert saved.labels.shape == (3, 16, 16)
        assert all(isinstance(o, int) and o >= 1 for o in saved.objects)
        assert saved.stack_axis in (0, 1, 2)
        assert all(0 <= a <= b < 3 for a, b in saved.frame_ranges.values())
    except Sam2Error as exc:
        assert "\n" not in str(exc)
    assert _digests(folder) == before


DTYPES = st.sampled_from(
    [np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64, np.bool_, np.complex64,
     object, "U2", "datetime64[s]"]
)  # fmt: skip


@FUZZ
@given(
    shape=st.one_of(
        st.lists(st.integers(0, 6), min_size=0, max_size=5),
        st.lists(st.integers(1, 9), min_size=3, max_size=4),  # stacks, with or without channels
    ),
    dtype=DTYPES,
    fill=st.sampled_from([0.0, 1.0, np.nan, np.inf, -5.0, 300.0]),
    channel_axis=st.none() | st.integers(-6, 6) | st.sampled_from(["x", 1.5, True]),
)
def test_fuzz_frame_arrays(shape, dtype, fill, channel_axis):
    try:
        frames = np.full(shape, fill).astype(dtype)
    except (TypeError, ValueError, OverflowError):  # the array itself cannot be made
        return
    copy = frames.copy()
    try:
        source = FrameSource(frames, 64, channel_axis=channel_axis)
        x = source.get(0)
        assert tuple(x.shape) == (1, 3, 64, 64)
        source.close()
    except Sam2Error as exc:
        assert "\n" not in str(exc)
    assert frames.dtype == copy.dtype and frames.shape == copy.shape
    if frames.dtype.kind == "O":  # the same objects, none replaced
        assert [id(v) for v in frames.ravel()] == [id(v) for v in copy.ravel()]
    else:
        assert frames.tobytes() == copy.tobytes()
