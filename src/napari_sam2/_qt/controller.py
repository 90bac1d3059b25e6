"""Qt-free logic behind the SAM 2 dock widget.

One :class:`Sam2Controller` per widget holds the model, the
:class:`~napari_sam2.engine.session.VideoSession` and the bookkeeping the widget needs:
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

import os
import time
import uuid
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.plans import PropagationPass
from ..engine.prompts import FramePrompt
from ..errors import InputError
from ..files.session_files import SESSION_VERSION
from ..files.stacks import Stack, frame_index

STACK_KINDS = ("time", "z")

Key = tuple[int, int]  # (frame, object id)


# --------------------------------------------------------------------------- frames


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


def apply_frame_ranges(session, ranges: Mapping[int, tuple[int, int]]) -> None:
    """Limit the session's objects to their frames (worker thread); each range is
    widened to reach the object's prompts. Ids the session does not hold are skipped."""
    for obj, (first, last) in ranges.items():
        if obj in session.obj_ids:
            frames = session.prompt_frames(obj)
            session.set_frame_range(obj, min(first, *frames), max(last, *frames))


# --------------------------------------------------------------------------- prompts


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


# --------------------------------------------------------------------------- session files


# --------------------------------------------------------------------------- controller


@dataclass(frozen=True)
class PromptEdits:
    """What a change of the prompt layers means for the session (see :meth:`Sam2Controller.take_edits`).

    ``by_frame``: frame -> [(obj, new FramePrompt or None, prompt the session
    had or None, the object has prompts on other frames)], the input of
    :meth:`Sam2Controller.apply_prompts`; ``corrections``: (frame,
    reached_reverse) of edits that correct tracked results and call for
    re-propagation (see :func:`~napari_sam2.engine.plans.merge_corrections`);
    ``outside``: edited keys whose frame is not in the stack (ignored).
    """

    by_frame: dict[int, list[tuple[int, FramePrompt | None, FramePrompt | None, bool]]]
    corrections: list[tuple[int, bool | None]]
    outside: list[Key]


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
        self.stack: Stack | None = None
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
        # Frames an object may exist on (tracks of "Track all cells", once corrected),
        # and the run's tracks not yet handed over (automatic_rules.TrackHandover).
        self.frame_ranges: dict[int, tuple[int, int]] = {}
        self.handover = None

    # -- model and session (worker thread) -----------------------------------

    def load_model(
        self, source: str, device: str = "auto", image_size: int | None = None, progress=None
    ):
        """Resolve (download if needed) and load a checkpoint; returns the model.

        ``progress(done_bytes, total_bytes)`` reports a download.
        """
        from ..weights.loading import load_model, resolve_device

        return load_model(
            os.fspath(source), resolve_device(device), image_size=image_size, progress=progress
        )

    def set_model(self, model, source: str, device: str, precision: str) -> None:
        """Install a loaded model (UI thread); the old session is closed."""
        self.close_session()
        self.model = model
        self.model_source = str(source)
        self.device = device
        self.precision = precision

    def open_session(self, stack: Stack):
        """A new VideoSession over ``stack`` (worker thread); returns it."""
        from ..engine.session import VideoSession

        if self.model is None:
            raise InputError("model: load a model first")
        return VideoSession(self.model, stack, dtype=self.precision)

    def set_session(self, session, stack: Stack) -> None:
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
        self.frame_ranges.clear()
        self.handover = None

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
        from ..engine.replay import replay_frame

        session = self._need_session()
        result, gone = None, set()
        for obj, prompt, before, has_others in items:
            if prompt is None or prompt.empty:
                res, left = self._drop_prompt(session, frame, obj, has_others)
                result = res if res is not None else result
                gone |= left
                continue
            prompt = clip_to_frame(prompt, session.frame_shape)
            entering = obj not in session.obj_ids
            result = replay_frame(session, frame, obj, prompt, before)
            if entering and obj in self.frame_ranges:
                # Later prompts outside the range widen it (VideoSession.set_frame_range).
                apply_frame_ranges(session, {obj: self.frame_ranges[obj]})
        return result, gone

    def _drop_prompt(self, session, frame: int, obj: int, has_others: bool):
        from ..engine.session import FrameResult

        if obj not in session.obj_ids:
            return None, set()
        if has_others:
            return session.clear_frame(frame, obj), set()
        results = session.remove_object(obj)
        mine = [r for r in results if r.frame == frame]
        return (mine[0] if mine else FrameResult.empty(frame, session.frame_shape)), {obj}

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

    def take_edits(self, current: Mapping[Key, FramePrompt], num_frames: int) -> PromptEdits:
        """Decide what the session must be told after the prompts changed to ``current``.

        Compares ``current`` (the layers' prompts per (frame, object)) with what
        the session was given, finds the edited keys, and for each decides
        whether it corrects results propagation reached (an edit that leaves an
        object with no prompt anywhere is no correction: the object leaves).
        The edits are recorded as applied. Keys on frames outside
        ``0..num_frames-1`` are reported in ``outside`` and not applied.
        """
        for _, obj in current:
            if obj not in self.objects:
                self.add_object(obj)
        keys = changed_keys(current, self.applied)
        outside = [k for k in keys if not 0 <= k[0] < num_frames]
        by_frame: dict[int, list] = {}
        corrections: list[tuple[int, bool | None]] = []
        for key in keys:
            if key in outside:
                continue
            frame, obj = key
            new, old = current.get(key), self.applied.get(key)
            others = any(k[1] == obj and k != key for k in current)
            by_frame.setdefault(frame, []).append((obj, new, old, others))
            reached, reverse = self.correction(frame, obj)
            if reached and (others or (new is not None and not new.empty)):
                corrections.append((frame, reverse))
            self.mark_applied(key, new)
        return PromptEdits(by_frame, corrections, outside)

    def hand_over_tracks(self, keys, labels=None, axis: int = 0) -> bool:
        """Tracks of the last "Track all cells" run prompted in ``keys`` become objects.

        ``keys``: the (frame, object) pairs the layers prompt now. Each such
        track gets its first frame's mask as mask prompt (unless the user
        prompted that frame), its frames as frame range, and its later frames
        as reached going forward, so that a prompt on one of them is a
        correction re-tracked forward from it. The pixels the run wrote count
        as napari-sam2's (a correction may clear them); pixels the user painted
        with the track's id since, in ``labels`` (the 3D labels layer, frames on
        ``axis``), stay the user's. True if any was handed over.
        """
        if self.handover is None:
            return False
        keys = set(keys)
        done = False
        for obj in sorted({o for _, o in keys}):
            taken = self.handover.take(obj)
            if taken is None:
                continue
            (first, last), mask = taken
            if (first, obj) not in keys:
                self.set_mask_prompt(first, obj, mask)
            self.frame_ranges[obj] = (first, last)
            self.reached[obj] = dict.fromkeys(range(first + 1, last + 1), False)
            self.written.add(obj)
            self.painted[obj] = {}
            if labels is not None:
                run = self.handover.labels  # frames first, the run's track ids
                tid = obj - self.handover.offset
                for t, plane in painted_pixels(labels, obj, axis).items():
                    own = plane & (np.asarray(run[t]) != tid)
                    if own.any():
                        self.painted[obj][t] = own
            self.add_object(obj, name=f"track {obj}")
            done = True
        return done

    def forget_applied(self, keys) -> None:
        """The session may hold only part of these prompts: send them again on the next edit."""
        for key in keys:
            self.applied.pop(key, None)

    def objects_left(self, gone) -> None:
        """Objects that left the session (their last prompt was deleted) were reached nowhere."""
        for obj in gone:
            self.reached.pop(obj, None)

    def set_mask_prompt(self, frame: int, obj: int, mask: np.ndarray) -> None:
        """A mask prompt for (frame, obj); it replaces that object's clicks and box there."""
        self.masks[(int(frame), int(obj))] = np.asarray(mask, bool)

    def drop_mask_prompts(self, match) -> None:
        """Forget the mask prompts whose (frame, obj) key ``match`` accepts."""
        for key in [k for k in self.masks if match(k)]:
            del self.masks[key]

    def remove_object_prompts(self, obj: int) -> None:
        """Forget an object: name, masks, reached frames and what the session was given."""
        self.forget_object(obj)
        for key in [k for k in self.applied if k[1] == obj]:
            del self.applied[key]

    def clear_objects(self) -> None:
        """Forget every object and mask prompt (the layers were detached)."""
        self.objects.clear()
        self.masks.clear()

    def rename_object(self, obj: int, name: str) -> None:
        if name:
            self.objects[int(obj)] = name

    def set_stack_kind(self, text: str) -> str:
        """ "time" or "z" from the panel's text; returns it."""
        self.stack_kind = "z" if text.startswith("z") else "time"
        return self.stack_kind

    def restore(self, saved, masks: dict[Key, np.ndarray]) -> None:
        """Take objects, id, folder and mask prompts from a validated saved session.

        ``saved`` is a :class:`~napari_sam2.files.saved_session.SavedSession`;
        the labels it holds of its objects count as written by napari-sam2.
        """
        self.masks = dict(masks)
        self.objects = dict(saved.objects)
        self.written, self.painted = set(saved.objects), {}
        self.frame_ranges = dict(saved.frame_ranges)
        self.handover = None
        self.session_id = saved.session_id or self.session_id
        self.session_folder = Path(saved.folder)

    def session_replayed(self, replayed: Mapping[Key, FramePrompt], reached) -> None:
        """A loaded session's prompts were replayed: record them and the saved reached frames."""
        for key, prompt in replayed.items():
            self.mark_applied(key, prompt)
        self.reached = {int(o): dict(frames) for o, frames in reached.items()}

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
        self.frame_ranges.pop(obj, None)
        if self.handover is not None:
            self.handover.drop(obj)
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
        from .. import __version__

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
            "objects": [self._object_meta(k, v) for k, v in sorted(self.objects.items())],
        }
        meta.update(extra or {})
        return meta

    def _object_meta(self, obj: int, name: str) -> dict:
        entry = {"id": int(obj), "name": name}
        if obj in self.frame_ranges:
            entry["frames"] = [int(f) for f in self.frame_ranges[obj]]
        return entry
