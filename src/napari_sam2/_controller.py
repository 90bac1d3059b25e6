"""Qt-free logic behind the SAM 2 dock widget.

One :class:`Sam2Controller` per widget holds the model, the
:class:`~napari_sam2.video.VideoSession` and the bookkeeping the widget needs:
objects and their names, which prompts the session has already seen, which
frames propagation reached, and the session folder. Its compute methods
(``load_model``, ``open_session``, ``apply_prompts``, ``propagate``...) run in
worker threads, one at a time; everything else runs on the UI thread.

The pure functions here (label merging, prompt grouping, propagation plans,
session files) take plain arrays so they can be unit-tested without napari.
Coordinates are (row, col) in data pixels; ``frame`` is the index along the
stack axis (time or z).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError, Sam2Error

SESSION_VERSION = 1
SESSION_FILE = "session.json"
LABELS_FILE = "labels.tif"
DIRECTIONS = ("forward", "backward", "both")
STACK_KINDS = ("time", "z")

Key = tuple[int, int]  # (frame, object id)


# --------------------------------------------------------------------------- frames


class StackView:
    """A lazy view of an array with the stack axis moved first.

    Indexing ``view[t]`` reads one frame from the underlying array (numpy,
    dask, zarr...), so the engine never loads the whole stack. ``rgb`` arrays
    keep their trailing channel axis.
    """

    def __init__(self, data, axis: int, rgb: bool = False) -> None:
        shape = tuple(int(s) for s in data.shape)
        spatial = len(shape) - (1 if rgb else 0)
        if spatial != 3:
            kind = "RGB " if rgb else ""
            raise InputError(
                f"image: expected a 3D {kind}stack (frames, rows, cols), got shape {shape}; "
                "pick a layer with one time or z axis"
            )
        if not 0 <= axis < spatial:
            raise InputError(f"stack axis: must be 0, 1 or 2, got {axis}")
        self.data = data
        self.axis = axis
        self.rgb = rgb
        rest = [s for i, s in enumerate(shape[:spatial]) if i != axis]
        self.shape = (shape[axis], *rest, *shape[spatial:])
        self.dtype = getattr(data, "dtype", None)

    @property
    def num_frames(self) -> int:
        return self.shape[0]

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.shape[1], self.shape[2]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, t):
        if not isinstance(t, (int, np.integer)):
            raise TypeError("StackView supports integer frame indices only")
        return np.asarray(self.data[frame_index(self.axis, t)])


def frame_index(axis: int, frame: int) -> tuple:
    """Index tuple selecting ``frame`` along ``axis`` (the remaining axes whole)."""
    return (slice(None),) * axis + (int(frame),)


def merge_labels(
    current: np.ndarray, predicted: np.ndarray, tracked: Collection[int], keep=None
) -> np.ndarray:
    """The frame after writing a prediction, without losing the user's own labels.

    Pixels that are background or belong to a tracked object take the
    prediction (which clears tracked objects that are no longer predicted);
    pixels of any other id (painted by the user) are never touched, nor are
    the ``keep`` pixels ((H, W) bool: painted with an object's id before the
    object was tracked, see :func:`painted_pixels`).
    """
    ids = np.fromiter(tracked, dtype=np.int64)
    writable = (current == 0) | np.isin(current, ids)
    if keep is not None:
        writable &= ~keep
    return np.where(writable, predicted, current).astype(current.dtype, copy=False)


def label_write(
    current: np.ndarray,
    predicted: np.ndarray,
    tracked: Collection[int],
    axis: int,
    frame: int,
    keep=None,
) -> tuple[tuple[np.ndarray, ...], np.ndarray] | None:
    """Indices (into the full labels array) and values of the pixels that change, or None."""
    merged = merge_labels(current, predicted, tracked, keep)
    changed = merged != current
    if not changed.any():
        return None
    rows, cols = np.nonzero(changed)
    where = [rows, cols]
    where.insert(axis, np.full(rows.shape, int(frame), dtype=rows.dtype))
    return tuple(where), merged[changed]


def painted_pixels(labels, obj: int, axis: int) -> dict[int, np.ndarray]:
    """{frame: (H, W) bool} of the pixels holding ``obj`` in a 3D label array (frames on ``axis``).

    Taken when napari-sam2 first writes an object: pixels the user painted with
    that id before are the user's, and predictions never overwrite them.
    """
    out = {}
    for t in range(int(labels.shape[axis])):
        plane = np.asarray(labels[frame_index(axis, t)]) == obj
        if plane.any():
            out[t] = plane
    return out


# --------------------------------------------------------------------------- prompts


@dataclass(frozen=True, eq=False)
class FramePrompt:
    """All prompts of one object on one frame.

    ``points`` (N, 2) (row, col) with ``labels`` 1/0; ``box`` (row0, col0,
    row1, col1) or None; ``mask`` (H, W) bool or None. They are replayed in
    the order mask, box, clicks: each refines the one before.
    """

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None

    @property
    def empty(self) -> bool:
        return len(self.labels) == 0 and self.box is None and self.mask is None

    def signature(self) -> bytes:
        """A digest that changes whenever any prompt changes (to find edited frames)."""
        h = hashlib.sha1()
        h.update(np.round(np.asarray(self.points, np.float64), 3).tobytes())
        h.update(np.asarray(self.labels, np.int64).tobytes())
        h.update(repr(None if self.box is None else tuple(round(v, 3) for v in self.box)).encode())
        if self.mask is not None:
            h.update(repr(self.mask.shape).encode())
            h.update(np.packbits(self.mask.astype(bool)).tobytes())
        return h.digest()


def group_points(coords, labels, objs, axis: int) -> dict[Key, tuple[np.ndarray, np.ndarray]]:
    """Clicks per (frame, object): (N, 2) (row, col) and their labels, in click order.

    ``coords`` (N, 3) data coordinates of a Points layer; the frame is the
    rounded coordinate along ``axis``.
    """
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    labels = np.asarray(labels).astype(np.int32).reshape(-1)
    objs = np.asarray(objs).astype(np.int64).reshape(-1)
    if not len(coords):
        return {}
    frames = np.rint(coords[:, axis]).astype(np.int64)
    plane = np.delete(coords, axis, axis=1)
    out: dict[Key, tuple[np.ndarray, np.ndarray]] = {}
    for frame, obj in sorted(set(zip(frames.tolist(), objs.tolist(), strict=True))):
        sel = (frames == frame) & (objs == obj)
        out[(frame, obj)] = (plane[sel].astype(np.float32), labels[sel])
    return out


def group_boxes(vertices, objs, axis: int) -> dict[Key, tuple[float, float, float, float]]:
    """One box (row0, col0, row1, col1) per (frame, object) from rectangle vertices.

    ``vertices``: one (4, 3) array per rectangle, in data coordinates. When an
    object has several rectangles on a frame the last one drawn wins.
    """
    out: dict[Key, tuple[float, float, float, float]] = {}
    for verts, obj in zip(vertices, objs, strict=True):
        v = np.asarray(verts, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != 3 or not len(v):
            continue
        frame = int(np.rint(v[:, axis].mean()))
        plane = np.delete(v, axis, axis=1)
        r0, c0 = plane.min(axis=0)
        r1, c1 = plane.max(axis=0)
        out[(frame, int(obj))] = (float(r0), float(c0), float(r1), float(c1))
    return out


def collect_prompts(points, boxes, masks: Mapping[Key, np.ndarray]) -> dict[Key, FramePrompt]:
    """Merge grouped clicks, boxes and mask prompts into one FramePrompt per key."""
    keys = set(points) | set(boxes) | set(masks)
    out = {}
    for key in sorted(keys):
        pts, labs = points.get(key, (np.zeros((0, 2), np.float32), np.zeros(0, np.int32)))
        out[key] = FramePrompt(pts, labs, boxes.get(key), masks.get(key))
    return out


def changed_keys(
    current: Mapping[Key, FramePrompt], applied: Mapping[Key, FramePrompt]
) -> list[Key]:
    """Keys whose prompts differ from what the session has seen (new, edited or deleted)."""
    keys = set(current) | set(applied)
    return sorted(
        k
        for k in keys
        if k not in current or k not in applied or applied[k].signature() != current[k].signature()
    )


def extends(before: FramePrompt, after: FramePrompt) -> bool:
    """True when ``after`` only adds clicks to ``before`` (same box, no mask, same earlier clicks)."""
    if before.mask is not None or after.mask is not None or before.box != after.box:
        return False
    n = len(before.labels)
    if n == 0 or len(after.labels) <= n:
        return False
    return bool(
        np.array_equal(after.labels[:n], before.labels)
        and np.allclose(after.points[:n], before.points, atol=1e-3)
    )


def clip_to_frame(prompt: FramePrompt, hw: tuple[int, int], slack: float = 1.0) -> FramePrompt:
    """Pull prompts that fall just outside the frame back onto it.

    A click on the border pixel can land at -0.4; clicks within ``slack``
    pixels of the frame are clamped onto it, farther ones are left for the
    engine to refuse. Boxes dragged past the edge are cut at the edge.
    """
    h, w = hw
    pts = np.asarray(prompt.points, np.float64).reshape(-1, 2)
    top = np.array([h - 1, w - 1], np.float64)
    near = np.all((pts >= -slack) & (pts <= top + slack), axis=1)
    pts = np.where(near[:, None], np.clip(pts, 0, top), pts).astype(np.float32)
    box = prompt.box
    if box is not None:
        r0, c0, r1, c1 = box
        box = (
            float(np.clip(r0, 0, h - 1)),
            float(np.clip(c0, 0, w - 1)),
            float(np.clip(r1, 0, h - 1)),
            float(np.clip(c1, 0, w - 1)),
        )
    return FramePrompt(pts, prompt.labels, box, prompt.mask)


# --------------------------------------------------------------------------- propagation plans


@dataclass(frozen=True)
class PropagationPass:
    """One engine pass: from ``start`` over ``max_frames`` frames, forward or backward.

    Results outside ``[first, last]`` (frames crossed to reach the range) are
    computed but not written.
    """

    start: int
    reverse: bool
    max_frames: int
    first: int
    last: int

    def frames(self) -> list[int]:
        step = -1 if self.reverse else 1
        return list(range(self.start, self.start + step * self.max_frames, step))

    def written(self) -> int:
        """How many of this pass's frames fall in the range."""
        return sum(self.first <= f <= self.last for f in self.frames())


def plan_propagation(
    direction: str, prompted: Collection[int], first: int, last: int
) -> list[PropagationPass]:
    """Passes that track from the prompted frames over ``[first, last]``.

    Forward starts at the earliest prompted frame in the range (or the latest
    one before it); backward at the latest one in the range (or the earliest
    one after it). "both" is forward, then backward.
    """
    if direction not in DIRECTIONS:
        raise InputError(f"direction: must be forward, backward or both, got {direction!r}")
    if first > last:
        raise InputError(f"range: first frame {first} is after last frame {last}")
    frames = sorted(set(int(f) for f in prompted))
    if not frames:
        raise InputError("prompts: nothing to propagate; click on an object first")
    passes = []
    if direction in ("forward", "both"):
        inside = [f for f in frames if first <= f <= last]
        before = [f for f in frames if f < first]
        start = inside[0] if inside else (before[-1] if before else None)
        if start is None:
            raise InputError(
                f"range: no prompt at or before frame {last} to propagate forward from"
            )
        passes.append(PropagationPass(start, False, last - start + 1, first, last))
    if direction in ("backward", "both"):
        inside = [f for f in frames if first <= f <= last]
        after = [f for f in frames if f > last]
        start = inside[-1] if inside else (after[0] if after else None)
        if start is None:
            raise InputError(
                f"range: no prompt at or after frame {first} to propagate backward from"
            )
        passes.append(PropagationPass(start, True, start - first + 1, first, last))
    return passes


def correction_plan(
    frame: int, reached_reverse: bool | None, first: int, last: int
) -> list[PropagationPass]:
    """Re-propagation after a correction on ``frame``.

    A frame that propagation reached going forward is re-tracked forward from
    it, one reached going backward backward; ``None`` (a prompted frame)
    re-tracks both ways. Frames outside the range are left alone.
    """
    if not first <= frame <= last:
        return []
    passes = []
    if reached_reverse is not True and frame < last:
        passes.append(PropagationPass(frame, False, last - frame + 1, first, last))
    if reached_reverse is not False and frame > first:
        passes.append(PropagationPass(frame, True, frame - first + 1, first, last))
    return passes


class Eta:
    """Estimated time left from the mean time per finished frame."""

    def __init__(self, total: int) -> None:
        self.total = max(0, int(total))
        self.done = 0
        self._start = time.monotonic()

    def step(self) -> None:
        self.done += 1

    def seconds_left(self) -> float | None:
        if self.done == 0:
            return None
        per_frame = (time.monotonic() - self._start) / self.done
        return per_frame * max(0, self.total - self.done)

    def text(self) -> str:
        left = self.seconds_left()
        if left is None:
            return f"0/{self.total} frames"
        return f"{self.done}/{self.total} frames, {format_seconds(left)} left"


def format_seconds(seconds: float) -> str:
    """'42 s', '3 min 05 s', '1 h 02 min'."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def empty_result(session, frame: int):
    """A FrameResult with no objects (every object left the session)."""
    from .video import FrameResult

    h, w = session.frame_shape
    return FrameResult(frame, (), np.zeros((0, h, w), np.float32), np.zeros(0, np.float32))


def one_line(exc: BaseException) -> str:
    """A user-facing one-line message: Sam2Error messages as is, others with their type."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, Sam2Error):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------- session files


def default_session_folder(image_path: str | None, layer_name: str) -> Path:
    """``<image dir>/<layer>_sam2_session`` when the image came from a file, else the cache."""
    safe = re.sub(r"[^\w.-]+", "_", layer_name).strip("_.") or "image"
    if image_path:
        return Path(image_path).expanduser().resolve().parent / f"{safe}_sam2_session"
    from .registry import cache_dir

    return cache_dir() / "sessions" / f"{safe}_sam2_session"


def read_session_json(folder: str | os.PathLike) -> dict:
    """The parsed ``session.json`` of a session folder; InputError if missing or unreadable."""
    path = Path(folder) / SESSION_FILE
    if not path.is_file():
        raise InputError(f"session: {folder} holds no {SESSION_FILE}; not a napari-sam2 session")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"session: cannot read {path}: {one_line(exc)}") from exc
    if not isinstance(meta, dict) or "objects" not in meta:
        raise InputError(f"session: {path} is not a napari-sam2 session file")
    return meta


def session_id_of(folder: str | os.PathLike) -> str | None:
    """The id stored in a folder's session.json, or None when there is none."""
    try:
        return str(read_session_json(folder).get("session_id") or "") or None
    except InputError:
        return None


def free_folder(folder: Path, current_id: str) -> Path:
    """``folder``, or ``folder_2``, ``folder_3``... : the first that is new, empty or this session.

    A folder holding another session, or any files of the user's, is skipped.
    """
    candidate, n = folder, 1
    while not _free_for(candidate, current_id):
        n += 1
        candidate = folder.with_name(f"{folder.name}_{n}")
    return candidate


def _free_for(folder: Path, current_id: str) -> bool:
    if not folder.exists():
        return True
    if not folder.is_dir():
        return False
    if (folder / SESSION_FILE).exists():
        return session_id_of(folder) == current_id
    return not any(folder.iterdir())


def write_session_json(folder: Path, meta: dict) -> Path:
    path = folder / SESSION_FILE
    tmp = folder / (SESSION_FILE + ".part")
    tmp.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- controller


class Sam2Controller:
    """Model, VideoSession and bookkeeping of one widget (no Qt, no napari).

    Compute methods are called from one worker thread at a time; the others
    from the UI thread.
    """

    def __init__(self) -> None:
        self.model = None
        self.model_source: str | None = None  # registry name or file path
        self.device = "auto"
        self.precision = "float32"
        self.session = None
        self.stack: StackView | None = None
        self.stack_kind = "time"
        self.objects: dict[int, str] = {}
        self.masks: dict[Key, np.ndarray] = {}
        self.applied: dict[Key, FramePrompt] = {}
        self.reached: dict[int, dict[int, bool]] = {}
        self.session_id = uuid.uuid4().hex
        self.session_folder: Path | None = None
        self.last_range: tuple[int, int] | None = None  # of the last user propagation
        # Ids napari-sam2 has written, and the pixels painted with each before that.
        self.written: set[int] = set()
        self.painted: dict[int, dict[int, np.ndarray]] = {}

    # -- model and session (worker thread) -----------------------------------

    def load_model(self, source: str, device: str = "auto", image_size: int = 1024, progress=None):
        """Resolve (download if needed) and load a checkpoint; returns the model.

        ``progress(done_bytes, total_bytes)`` reports a download.
        """
        from .checkpoint import load_model, resolve_device
        from .registry import resolve_checkpoint

        dev = resolve_device(device)
        path = resolve_checkpoint(os.fspath(source), progress=progress)
        return load_model(path, device=dev, image_size=image_size)

    def set_model(self, model, source: str, device: str, precision: str) -> None:
        """Install a loaded model (UI thread); the old session is closed."""
        self.close_session()
        self.model = model
        self.model_source = str(source)
        self.device = device
        self.precision = precision

    def open_session(self, stack: StackView):
        """A new VideoSession over ``stack`` (worker thread); returns it."""
        from .video import VideoSession

        if self.model is None:
            raise InputError("model: load a model first")
        return VideoSession(self.model, stack, dtype=self.precision)

    def set_session(self, session, stack: StackView) -> None:
        """Install a session (UI thread); the prompts must be applied to it again."""
        self.close_session()
        self.session = session
        self.stack = stack
        self.applied.clear()
        self.reached.clear()

    def close_session(self) -> None:
        session = self.detach_session()
        if session is not None:
            session.close()

    def new_identity(self) -> None:
        """A fresh session id and no folder: saving starts a new session folder."""
        self.session_id = uuid.uuid4().hex
        self.session_folder = None
        self.last_range = None
        self.written.clear()
        self.painted.clear()

    def detach_session(self):
        """Forget the session without closing it (a worker may still use it); returns it."""
        session, self.session = self.session, None
        self.applied.clear()
        self.reached.clear()
        return session

    # -- prompts (worker thread) --------------------------------------------

    def apply_prompts(self, frame: int, items) -> tuple[object | None, set[int]]:
        """Send the prompts of objects on one frame to the session.

        ``items``: (obj, new FramePrompt or None, prompt the session has now
        or None, has prompts elsewhere). An object whose last prompt went away
        leaves the session. Returns the frame's FrameResult (None if nothing
        ran) and the ids that left.
        """
        session = self._need_session()
        result, gone = None, set()
        for obj, prompt, before, has_others in items:
            if prompt is None or prompt.empty:
                res, left = self._drop_prompt(session, frame, obj, has_others)
                result = res if res is not None else result
                gone |= left
                continue
            prompt = clip_to_frame(prompt, session.frame_shape)
            result = self._replay(session, frame, obj, prompt, before)
        return result, gone

    def _replay(self, session, frame: int, obj: int, prompt: FramePrompt, before):
        """Prompt the session like :func:`prompt_io.apply_prompts` replays a saved session.

        New clicks that extend the ones the session has are added one by one
        (each refines the mask); any other edit replays the frame: the mask
        alone, or the box then every click in order.
        """
        if prompt.mask is not None:
            return session.add_mask(frame, obj, prompt.mask)
        known = 0 if before is None or not extends(before, prompt) else len(before.labels)
        result = None
        if known == 0 and prompt.box is not None:
            result = session.add_box(frame, obj, prompt.box)
        for i in range(known, len(prompt.labels)):
            clear = i == 0 and prompt.box is None
            point, label = prompt.points[i : i + 1], prompt.labels[i : i + 1]
            result = session.add_points(frame, obj, point, label, clear=clear)
        return result

    def _drop_prompt(self, session, frame: int, obj: int, has_others: bool):
        if obj not in session.obj_ids:
            return None, set()
        if has_others:
            return session.clear_frame(frame, obj), set()
        results = session.remove_object(obj)
        mine = [r for r in results if r.frame == frame]
        return (mine[0] if mine else empty_result(session, frame)), {obj}

    def remove_object(self, obj: int) -> list:
        """Forget an object in the session (worker thread); results of its prompt frames."""
        session = self.session
        if session is None or obj not in session.obj_ids:
            return []
        return session.remove_object(obj)

    def propagate(self, passes: list[PropagationPass]) -> Iterator:
        """Yield (FrameResult, reverse) for the passes' frames inside their ranges (worker thread)."""
        session = self._need_session()
        for p in passes:
            frames = session.propagate(p.start, reverse=p.reverse, max_frames=p.max_frames)
            try:
                while True:
                    result = next(frames, None)
                    if result is None:
                        break
                    if p.first <= result.frame <= p.last:
                        yield result, p.reverse
            finally:
                frames.close()

    def _need_session(self):
        if self.session is None:
            raise InputError("session: load a model and pick an image first")
        return self.session

    # -- bookkeeping (UI thread) ---------------------------------------------

    def mark_applied(self, key: Key, prompt: FramePrompt | None) -> None:
        if prompt is None or prompt.empty:
            self.applied.pop(key, None)
        else:
            self.applied[key] = prompt

    def prompted_frames(self, obj: int | None = None) -> set[int]:
        return {f for f, o in self.applied if obj is None or o == obj}

    def record_reached(self, result, reverse: bool) -> None:
        """Remember which objects propagation reached on a frame, and from which side."""
        for obj in result.obj_ids:
            self.reached.setdefault(obj, {})[result.frame] = reverse

    def correction(self, frame: int, obj: int) -> tuple[bool, bool | None]:
        """Is a prompt change on (frame, obj) a correction of tracked results, and which way?

        Call it before :meth:`mark_applied`. Returns (reached, reverse): a
        frame propagation reached forward re-tracks forward (False), backward
        backward (True); an already prompted frame both ways (None).
        """
        seen = self.reached.get(obj, {})
        if frame not in seen:
            return False, None
        if (frame, obj) in self.applied:
            return True, None
        return True, seen[frame]

    def kept_pixels(self, frame: int) -> np.ndarray | None:
        """(H, W) bool: pixels painted with an object's id before it was tracked, on ``frame``."""
        masks = [m[frame] for m in self.painted.values() if frame in m]
        if not masks:
            return None
        return np.logical_or.reduce(masks) if len(masks) > 1 else masks[0]

    def forget_object(self, obj: int) -> None:
        self.written.discard(obj)
        self.painted.pop(obj, None)
        self.objects.pop(obj, None)
        self.reached.pop(obj, None)
        for key in [k for k in self.masks if k[1] == obj]:
            del self.masks[key]

    def add_object(self, obj_id: int | None = None, name: str | None = None, taken=()) -> int:
        """Register an object; a new id is one above every known or ``taken`` id."""
        if obj_id is None:
            obj_id = max([0, *self.objects, *(int(t) for t in taken)]) + 1
        obj_id = int(obj_id)
        if obj_id < 1:
            raise InputError(f"obj_id: object ids start at 1, got {obj_id}")
        if obj_id not in self.objects:
            self.objects[obj_id] = name or f"object {obj_id}"
        elif name:
            self.objects[obj_id] = name
        return obj_id

    def session_meta(self, image: dict, layers: dict, stack_axis: int, extra=None) -> dict:
        """The content of session.json."""
        from . import __version__

        meta = {
            "format": "napari-sam2 session",
            "version": SESSION_VERSION,
            "napari_sam2_version": __version__,
            "session_id": self.session_id,
            "image": image,
            "layers": layers,
            "model": {
                "source": self.model_source,
                "device": self.device,
                "precision": self.precision,
                "image_size": None if self.model is None else int(self.model.cfg.image_size),
            },
            "stack_axis": int(stack_axis),
            "stack_kind": self.stack_kind,
            "objects": [{"id": int(k), "name": v} for k, v in sorted(self.objects.items())],
        }
        meta.update(extra or {})
        return meta
