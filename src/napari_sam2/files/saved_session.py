"""Reading a saved widget session folder, validated as a whole before anything uses it.

A session folder (written by the widget) holds ``session.json``,
``labels.tif`` and the prompt files of :mod:`napari_sam2.files.prompt_files`.
:func:`read_session` reads every file and checks every field, so that the
widget can restore a session all or nothing: either a complete, consistent
:class:`SavedSession`, or one :class:`~napari_sam2.errors.InputError` naming
the file and field, and nothing changed anywhere. No Qt, no torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

LABEL_MAX = 2**31 - 1  # labels are int32 in the widget and on disk
STACK_KINDS = ("time", "z")
PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class SavedModel:
    """The model a session was made with: registry name or path, device, precision, input px."""

    source: str | None = None
    device: str = "auto"
    precision: str = "float32"
    image_size: int | None = None  # None: the checkpoint's own


@dataclass(frozen=True)
class SavedSession:
    """A validated session folder.

    ``labels``: (T, H, W) int32, frames first; ``stack_axis``: where the
    frames axis goes in the image (0, 1 or 2); ``reached``: {object: {frame:
    reached going backward}}.
    """

    folder: Path
    session_id: str | None
    image_layer: str | None
    image_path: str | None
    stack_axis: int
    stack_kind: str
    objects: dict[int, str]
    selected_label: int | None
    reached: dict[int, dict[int, bool]]
    model: SavedModel
    labels: np.ndarray
    prompts: object = field(repr=False)  # prompt_files.Prompts
    effort: object = field(default=None, repr=False)  # review.effort.EffortLog or None
    review: object = field(default=None, repr=False)  # review.session_review.SessionReview
    frame_ranges: dict[int, tuple[int, int]] = field(default_factory=dict)


def _frame_range(value, path: Path, name: str) -> tuple[int, int]:
    """A [first, last] pair of frame indices with first <= last."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _fail(path, f"{name} must be a [first, last] pair, got {value!r}")
    first, last = (_int(v, path, name, 0) for v in value)
    if first > last:
        raise _fail(path, f"{name}: first frame {first} is after last frame {last}")
    return first, last


def _fail(path: Path, what: str) -> InputError:
    return InputError(f"session: {path}: {what}")


def _int(value, path: Path, name: str, low: int | None = None, high: int | None = None) -> int:
    """An integer field (an int, or a string of digits as older files may hold)."""
    if isinstance(value, bool):
        raise _fail(path, f"{name} must be an integer, got {value!r}")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise _fail(path, f"{name} must be an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise _fail(path, f"{name} must be in {span}, got {value}")
    return value


def _text(value, path: Path, name: str, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _fail(path, f"{name} must be text, got {value!r}")
    return value


def parse_session_meta(meta: object, path: Path) -> dict:
    """Check every field of a parsed ``session.json``; returns the clean values.

    Raises InputError naming the field. ``path`` is only used in messages.
    """
    if not isinstance(meta, dict):
        raise _fail(path, "is not a napari-sam2 session file (expected a JSON object)")
    objects_raw = meta.get("objects")
    if not isinstance(objects_raw, list):
        raise _fail(path, "objects must be a list of {id, name}")
    objects: dict[int, str] = {}
    frame_ranges: dict[int, tuple[int, int]] = {}
    for i, entry in enumerate(objects_raw):
        if not isinstance(entry, dict):
            raise _fail(path, f"objects[{i}] must be an object with id and name, got {entry!r}")
        obj = _int(entry.get("id"), path, f"objects[{i}].id", 1, LABEL_MAX)
        name = entry.get("name", f"object {obj}")
        objects[obj] = str(name) if isinstance(name, (str, int, float)) else f"object {obj}"
        if entry.get("frames") is not None:
            frame_ranges[obj] = _frame_range(entry["frames"], path, f"objects[{i}].frames")
    image = meta.get("image") or {}
    if not isinstance(image, dict):
        raise _fail(path, f"image must be an object, got {image!r}")
    axis = _int(meta.get("stack_axis", 0), path, "stack_axis", 0, 2)
    kind = meta.get("stack_kind", "time")
    if kind not in STACK_KINDS:
        raise _fail(path, f"stack_kind must be 'time' or 'z', got {kind!r}")
    selected = meta.get("selected_label")
    selected = None if selected is None else _int(selected, path, "selected_label", 0, LABEL_MAX)
    reached_raw = meta.get("reached") or {}
    if not isinstance(reached_raw, dict):
        raise _fail(path, "reached must map object ids to [frame, reverse] pairs")
    reached: dict[int, dict[int, bool]] = {}
    for key, pairs in reached_raw.items():
        obj = _int(key, path, f"reached key {key!r}", 1, LABEL_MAX)
        if not isinstance(pairs, list):
            raise _fail(path, f"reached[{key!r}] must be a list of [frame, reverse] pairs")
        frames: dict[int, bool] = {}
        for pair in pairs:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise _fail(path, f"reached[{key!r}] holds {pair!r}, not a [frame, reverse] pair")
            frame = _int(pair[0], path, f"reached[{key!r}] frame", 0)
            flag = pair[1]
            if flag not in (0, 1) or isinstance(flag, float):
                raise _fail(
                    path, f"reached[{key!r}] reverse must be 0/1 or a boolean, got {flag!r}"
                )
            frames[frame] = bool(flag)
        reached[obj] = frames
    model = meta.get("model") or {}
    if not isinstance(model, dict):
        raise _fail(path, f"model must be an object, got {model!r}")
    precision = model.get("precision") or "float32"
    if precision not in PRECISIONS:
        raise _fail(path, f"model.precision must be float32 or bfloat16, got {precision!r}")
    size = model.get("image_size")
    size = None if size is None else _int(size, path, "model.image_size", 64, 4096)
    if size is not None and size % 32:
        raise _fail(path, f"model.image_size must be a multiple of 32, got {size}")
    device = _text(model.get("device"), path, "model.device") or "auto"
    if device not in ("auto", "cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise _fail(path, f"model.device must be auto, cpu, cuda or mps, got {device!r}")
    session_id = meta.get("session_id")
    return {
        "session_id": None if session_id in (None, "") else str(session_id),
        "image_layer": _text(image.get("layer"), path, "image.layer"),
        "image_path": _text(image.get("path"), path, "image.path"),
        "stack_axis": axis,
        "stack_kind": kind,
        "objects": objects,
        "frame_ranges": frame_ranges,
        "selected_label": selected,
        "reached": reached,
        "model": SavedModel(
            _text(model.get("source"), path, "model.source"), device, precision, size
        ),
    }


def read_session(folder: str | os.PathLike) -> SavedSession:
    """Read and validate a whole session folder; InputError (one line) on any problem.

    Checks: session.json's fields; labels.tif is a (T, H, W) label volume with
    ids in 0..2**31-1; every prompt lies on one of the T frames and inside the
    H x W frame; a mask-prompt volume has the labels' shape; an object's frame
    range lies on the T frames.
    """
    from .prompt_files import (
        BOXES_FILE,
        MASKS_FILE,
        POINTS_FILE,
        Prompts,
        check_prompts,
        read_prompts,
    )
    from .session_files import LABELS_FILE, read_session_json
    from .tiff import read_label_tiff

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        what = "is a file, not a session folder" if folder.exists() else "does not exist"
        raise InputError(f"session: {folder} {what}")
    json_path = folder / "session.json"
    clean = parse_session_meta(read_session_json(folder), json_path)
    labels_path = folder / LABELS_FILE
    if not labels_path.is_file():
        raise InputError(f"session: {folder} holds no {LABELS_FILE}")
    labels = np.asarray(read_label_tiff(labels_path))
    if labels.size and (labels.min() < 0 or labels.max() > LABEL_MAX):
        raise InputError(
            f"session: {labels_path}: label ids must be in 0..{LABEL_MAX}, "
            f"found {labels.min()}..{labels.max()}"
        )
    labels = labels.astype(np.int32, copy=False)
    has_prompts = any((folder / f).exists() for f in (POINTS_FILE, BOXES_FILE, MASKS_FILE))
    prompts = read_prompts(folder) if has_prompts else Prompts()
    try:
        check_prompts(prompts, labels.shape[0], labels.shape[1:])
    except InputError as exc:
        raise InputError(
            f"session: {folder}: {str(exc).removeprefix('prompts: ')} (labels.tif is "
            f"{tuple(labels.shape)})"
        ) from None
    for obj, (_, last) in clean["frame_ranges"].items():
        if last >= labels.shape[0]:
            raise InputError(
                f"session: {json_path}: object {obj}'s frames end at {last}, but labels.tif "
                f"has {labels.shape[0]} frames"
            )
    if prompts.masks is not None:  # the widget keeps them in memory
        prompts = Prompts(prompts.points, prompts.boxes, np.array(prompts.masks))
    effort, review = _review_files(folder, labels.shape[0])
    return SavedSession(
        folder=folder, labels=labels, prompts=prompts, effort=effort, review=review, **clean
    )


def _review_files(folder: Path, num_frames: int):
    """The session's effort log and review queue, if saved; InputError if damaged."""
    import json

    from ..review.effort import EFFORT_FILE, EffortLog
    from ..review.session_review import REVIEW_FILE, SessionReview

    effort = review = None
    if (folder / EFFORT_FILE).exists():
        effort = EffortLog.load(folder / EFFORT_FILE)  # InputError naming the file
        if effort.num_frames != num_frames:
            raise InputError(
                f"session: {folder / EFFORT_FILE}: counts {effort.num_frames} frames but "
                f"labels.tif has {num_frames}"
            )
    path = folder / REVIEW_FILE
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"session: {path}: cannot read it ({exc})") from None
        review = SessionReview.from_dict(data, f"session: {path}")
    return effort, review


def labels_shape_for(image_shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    """(T, H, W): the spatial ``image_shape`` with the stack ``axis`` moved first."""
    shape = list(image_shape)
    return (shape.pop(axis), *shape)
