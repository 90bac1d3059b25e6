"""Streaming SAM 2 tracking over time-lapses and z-stacks: ``VideoSession``.

A session wraps a model and a lazily read stack of frames. Prompts (clicks,
boxes, masks) can be added for any integer object id on any frame at any
time; ``propagate`` then yields one :class:`FrameResult` per frame as soon as
it is computed. Nothing per frame is retained beyond what the model reads back
(see :mod:`napari_sam2.engine.memory_bank`), so RAM does not grow with the stack.

Results equal the reference ``SAM2VideoPredictor`` (sam2 1.1.0) frame by
frame; the one deliberate difference is ``corrections_as_conditioning``
(documented in docs/differences.md).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..modeling.image_encoder import ImageFeatures
from ..modeling.memory_selection import select_memories
from ..modeling.sam2 import NO_OBJECT_LOGIT, MemoryContext, Sam2Model
from .feature_cache import DiskFeatureCache, cache_key
from .frame_result import FrameResult
from .frames import FrameSource
from .memory_bank import FrameOutput, MemoryBank, ObjectTrack
from .plans import check_direction, plan_passes
from .postprocess import fill_small_holes
from .precision import autocast, resolve_dtype
from .prompts import PointPrompt, box_to_points, check_points, points_to_model


class VideoSession:
    """Interactive, streaming SAM 2 tracking over a stack of frames.

    Parameters
    ----------
    model: a loaded :class:`~napari_sam2.modeling.sam2.Sam2Model`.
    frames: array-like (T, H, W) or (T, H, W, C), indexed lazily along axis 0.
    channel_axis: axis of ``frames`` holding channels, if not the last.
    contrast_limits: intensity window (lo, hi), or one per channel; by default
        robust percentiles of the stack (8-bit RGB is used as is).
    fill_hole_area: background holes of at most this many low-res pixels
        inside a mask are filled (0 disables).
    corrections_as_conditioning: a prompt on an already tracked frame becomes
        a conditioning frame, so re-propagation never discards it. False gives
        the reference predictor's behaviour.
    feature_cache: how many frames' image features to keep (LRU).
    spill_dir: where evicted memories go (a private temp folder inside it);
        ``spill=False`` keeps none, so corrections far behind the tracking
        front see no old memories.
    feature_dir: optional folder for an on-disk cache of image features
        (about 17 MB per frame at 1024 px), keyed on the model and the data, so
        re-propagation and later sessions skip the image encoder.
    dtype: "float32" (exact), "bfloat16" (autocast; CUDA, or a CPU with bf16
        matrix instructions), or None: bfloat16 on CUDA, float32 elsewhere.
    """

    def __init__(
        self,
        model: Sam2Model,
        frames,
        channel_axis: int | None = None,
        contrast_limits: Sequence | None = None,
        fill_hole_area: int = 8,
        corrections_as_conditioning: bool = True,
        feature_cache: int = 4,
        spill: bool = True,
        spill_dir: str | Path | None = None,
        feature_dir: str | Path | None = None,
        dtype: str | None = None,
    ) -> None:
        if isinstance(fill_hole_area, bool) or not isinstance(fill_hole_area, (int, np.integer)):
            raise InputError(f"fill_hole_area: must be an integer >= 0, got {fill_hole_area!r}")
        if fill_hole_area < 0:
            raise InputError(f"fill_hole_area: must be >= 0, got {fill_hole_area}")
        if spill_dir is not None and not Path(spill_dir).is_dir():
            raise InputError(f"spill_dir: {spill_dir} is not an existing folder")
        if (
            feature_dir is not None
            and Path(feature_dir).exists()
            and not Path(feature_dir).is_dir()
        ):
            raise InputError(f"feature_dir: {feature_dir} is a file, not a folder")
        self._closed = False
        self._version = 0  # bumped by every prompt change; open propagations end on it
        self.model = model
        self.dtype = resolve_dtype(dtype, model.device)
        self.cfg = model.cfg
        self.source = FrameSource(frames, self.cfg.image_size, channel_axis, contrast_limits)
        self.num_frames = self.source.num_frames
        self.frame_shape: tuple[int, int] = self.source.hw
        self.fill_hole_area = int(fill_hole_area)
        self.corrections_as_conditioning = corrections_as_conditioning
        self._feature_cache_size = max(1, feature_cache)
        self._features: OrderedDict[int, ImageFeatures] = OrderedDict()
        self._tracks: dict[int, ObjectTrack] = {}
        self._bank = MemoryBank(self.cfg.max_obj_ptrs_in_encoder, spill, spill_dir)
        self._disk_features = None
        if feature_dir is not None:
            key = cache_key(model, self.source)
            self._disk_features = DiskFeatureCache(feature_dir, key)

    # -- public API ----------------------------------------------------------

    @property
    def obj_ids(self) -> tuple[int, ...]:
        return tuple(self._tracks)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def prompts(self, obj_id: int) -> dict[int, PointPrompt]:
        """The point prompts of an object, per frame ((row, col), labels; boxes as labels 2/3)."""
        return dict(self._existing(obj_id).points)

    @torch.inference_mode()
    def add_points(
        self, frame: int, obj_id: int, points, labels, clear: bool = True
    ) -> FrameResult:
        """Click on ``frame``: points (N, 2) as (row, col), labels 1 positive / 0 negative.

        ``clear=False`` adds to the object's earlier clicks on this frame.
        """
        self._check_open()
        frame = self.source.check_index(frame)
        obj_id = _check_obj_id(obj_id)
        new = check_points(points, labels, self.frame_shape)
        track = self._tracks.get(obj_id)
        old = None if clear or track is None else track.points.get(frame)
        return self._add_point_prompt(frame, obj_id, new if old is None else old.concat(new))

    @torch.inference_mode()
    def add_box(self, frame: int, obj_id: int, box) -> FrameResult:
        """A box (row0, col0, row1, col1); it replaces the object's clicks on this frame."""
        self._check_open()
        frame = self.source.check_index(frame)
        obj_id = _check_obj_id(obj_id)
        return self._add_point_prompt(frame, obj_id, box_to_points(box, self.frame_shape))

    @torch.inference_mode()
    def add_mask(self, frame: int, obj_id: int, mask) -> FrameResult:
        """A mask prompt: (H, W) boolean (or 0/1) array at the frame's size."""
        self._check_open()
        frame = self.source.check_index(frame)
        obj_id = _check_obj_id(obj_id)
        mask_t = self._mask_to_model(mask)
        self._version += 1
        track = self._track(obj_id)
        _cover(track, frame)
        track.masks[frame] = mask_t
        track.points.pop(frame, None)
        self._run_prompt(track, frame, mask=mask_t)
        return self._frame_result(frame)

    def prompt_frames(self, obj_id: int) -> list[int]:
        """The frames holding the object's prompts (clicks, boxes, masks), sorted."""
        track = self._existing(obj_id)
        return sorted(track.prompt_frames() | set(track.cond) | set(track.pending))

    def frame_range(self, obj_id: int) -> tuple[int, int]:
        """The (first, last) frames an object may exist on (inclusive); see :meth:`set_frame_range`."""
        track = self._existing(obj_id)
        return track.span if track.span is not None else (0, self.num_frames - 1)

    @torch.inference_mode()
    def set_frame_range(self, obj_id: int, first: int, last: int) -> None:
        """Let an object exist only on frames ``first..last`` (inclusive).

        Propagation neither tracks nor draws it outside that range, and its
        outputs there are dropped: an automatic track keeps its frames (a
        mother ends at its division, a daughter starts at it) when it is
        corrected like a manual object. Every prompt of the object must lie in
        the range; a later prompt outside it widens the range to reach it.
        """
        self._check_open()
        track = self._existing(obj_id)
        first = self.source.check_index(first, "first")
        last = self.source.check_index(last, "last")
        if first > last:
            raise InputError(f"last: frame {last} is before first frame {first}")
        outside = [f for f in self.prompt_frames(obj_id) if not first <= f <= last]
        if outside:
            name = "first" if outside[0] < first else "last"
            raise InputError(
                f"{name}: object {track.obj_id} has a prompt on frame {outside[0]}, "
                f"outside {first}..{last}"
            )
        self._version += 1
        track.span = (first, last)
        for frame in [f for f in track.tracked if not track.covers(f)]:
            self._bank.pop(track, frame, self.device)
            del track.tracked[frame]

    @torch.inference_mode()
    def remove_object(self, obj_id: int) -> list[FrameResult]:
        """Forget an object: prompts, memories and outputs. Returns the updated prompt frames."""
        self._check_open()
        track = self._tracks.pop(self._existing(obj_id).obj_id)
        self._version += 1
        self._bank.forget(track)
        if not self._tracks:
            return []
        return [self._frame_result(f) for f in sorted(track.prompt_frames())]

    @torch.inference_mode()
    def clear_frame(self, frame: int, obj_id: int | None = None) -> FrameResult:
        """Remove the prompts on ``frame`` (of one object, or all); it stops conditioning."""
        self._check_open()
        frame = self.source.check_index(frame)
        tracks = list(self._tracks.values()) if obj_id is None else [self._existing(obj_id)]
        self._version += 1
        for track in tracks:
            track.points.pop(frame, None)
            track.masks.pop(frame, None)
            track.pending.pop(frame, None)
            out = track.cond.pop(frame, None)
            if out is not None:
                self._bank.put(track, frame, out)
                track.tracked.pop(frame, None)
        return self._frame_result(frame)

    def reset(self) -> None:
        """Forget all objects and prompts (cached image features are kept)."""
        self._check_open()
        self._version += 1
        for track in self._tracks.values():
            self._bank.forget(track)
        self._tracks.clear()

    def propagate(
        self, start_frame: int | None = None, reverse: bool = False, max_frames: int | None = None
    ) -> Iterator[FrameResult]:
        """Track all objects frame by frame, yielding each frame's result at once.

        Starts at ``start_frame`` and runs forward, or backward with ``reverse``,
        over at most ``max_frames`` frames (the start included). The default start
        is the earliest prompted frame going forward, the latest going backward.
        Stop early by closing the iterator.

        The iterator tracks the prompts it started with: a prompt change
        (``add_*``, ``clear_frame``, ``remove_object``, ``reset``) or
        ``close()`` while it is open ends it cleanly before its next frame;
        call ``propagate`` again to track with the new prompts.
        """
        self._check_open()
        with torch.inference_mode():
            self._fold_pending()
            if start_frame is None:
                prompted = [f for t in self._tracks.values() for f in t.cond]
                start_frame = max(prompted) if reverse else min(prompted)
            start_frame = self.source.check_index(start_frame, "start_frame")
            if max_frames is not None and (
                isinstance(max_frames, bool)
                or not isinstance(max_frames, (int, np.integer))
                or max_frames < 1
            ):
                raise InputError(f"max_frames: must be a positive integer, got {max_frames!r}")
        order = self._order(start_frame, reverse, None if max_frames is None else int(max_frames))
        version = self._version
        for i, frame in enumerate(order):
            if self._closed or self._version != version:
                return  # the prompts changed or the session closed: end cleanly
            with torch.inference_mode():
                result = self._propagate_frame(frame, reverse, upcoming=order[i + 1 : i + 3])
            yield result

    def segment(self, direction: str = "both", start_frame: int | None = None) -> np.ndarray:
        """Propagate and return the label volume (T, H, W) int32 (object ids, 0 background).

        ``direction`` is "forward", "backward" or "both", planned by
        :func:`~napari_sam2.engine.plans.plan_passes` from the prompted frames
        (or from ``start_frame`` alone when given): "both" runs forward from the
        earliest prompted frame, then backward from that same frame, so every
        frame is covered once.
        """
        self._check_open()
        check_direction(direction)
        if start_frame is None:
            with torch.inference_mode():
                self._fold_pending()  # the prompted frames are known after this
            prompted = {f for t in self._tracks.values() for f in t.cond}
        else:
            prompted = {self.source.check_index(start_frame, "start_frame")}
        labels = np.zeros((self.num_frames, *self.frame_shape), np.int32)
        for p in plan_passes(direction, prompted, 0, self.num_frames - 1):
            for result in self.propagate(p.start, reverse=p.reverse, max_frames=p.max_frames):
                labels[result.frame] = result.label_image()
        return labels

    def close(self) -> None:
        """Release the frame reader and the spill folder; the session cannot be used after."""
        self._closed = True
        self.source.close()
        self._bank.close()
        self._features.clear()

    def __enter__(self) -> VideoSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- prompts -------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("session: this VideoSession is closed; open a new one")

    def _existing(self, obj_id) -> ObjectTrack:
        obj_id = _check_obj_id(obj_id)
        if obj_id not in self._tracks:
            raise InputError(f"obj_id: no object with id {obj_id} (known: {list(self._tracks)})")
        return self._tracks[obj_id]

    def _track(self, obj_id: int) -> ObjectTrack:
        if obj_id not in self._tracks:
            self._tracks[obj_id] = ObjectTrack(obj_id)
        return self._tracks[obj_id]

    def _mask_to_model(self, mask) -> torch.Tensor:
        m = np.asarray(mask)
        if m.shape != self.frame_shape:
            raise InputError(
                f"mask: expected shape {self.frame_shape} (the frame's), got {m.shape}"
            )
        if m.dtype != bool:
            if not np.all(np.isin(np.unique(m), (0, 1))):
                raise InputError("mask: must be boolean or contain only 0 and 1")
            m = m.astype(bool)
        t = torch.from_numpy(m).float()[None, None].to(self.device)
        s = self.cfg.image_size
        if m.shape != (s, s):
            t = F.interpolate(t, (s, s), mode="bilinear", align_corners=False, antialias=True)
            t = (t >= 0.5).float()
        return t

    def _add_point_prompt(self, frame: int, obj_id: int, prompt: PointPrompt) -> FrameResult:
        self._version += 1
        track = self._track(obj_id)
        _cover(track, frame)
        track.points[frame] = prompt
        track.masks.pop(frame, None)
        self._run_prompt(track, frame, points=prompt)
        return self._frame_result(frame)

    def _run_prompt(self, track: ObjectTrack, frame: int, points=None, mask=None) -> None:
        """Predict one object on a prompted frame; the output waits in ``pending``."""
        is_init = frame not in track.tracked
        reverse = track.tracked.get(frame, False)
        is_cond = is_init or self.corrections_as_conditioning
        prev_logits = None
        if points is not None:
            prev = self._output(track, frame)
            if prev is not None:
                prev_logits = prev.low_res.clamp(-32.0, 32.0)[None]
        xy = labels = None
        if points is not None:
            xy, labels = points_to_model(points, self.frame_shape, self.cfg.image_size, self.device)
        context = None if is_init else self._batch([self._context(track, frame, reverse)])
        with self._autocast():
            out = self.model.track_step(
                self._frame_features(frame), 1, context, xy, labels, mask, prev_logits, False
            )
        track.pending[frame] = (self._frame_output(out, 0), is_cond)

    def _output(self, track: ObjectTrack, frame: int) -> FrameOutput | None:
        """The object's latest output on a frame: pending, conditioning, or tracked."""
        if frame in track.pending:
            return track.pending[frame][0]
        if frame in track.cond:
            return track.cond[frame]
        return self._bank.get(track, frame, self.device)

    def _fold_pending(self) -> None:
        """Encode memories of prompted frames and make them conditioning (or tracked) outputs."""
        if not self._tracks:
            raise InputError("prompts: no objects to track; add points, a box or a mask first")
        for track in self._tracks.values():
            for frame, (out, is_cond) in sorted(track.pending.items(), key=lambda kv: kv[1][1]):
                if out.memory is None:
                    out.memory = self._memory_of_prompt(frame, out)
                if is_cond:
                    track.cond[frame] = out
                    self._bank.pop(track, frame, self.device)
                else:
                    self._bank.put(track, frame, out)
            track.pending.clear()
            if not track.cond:
                raise InputError(f"obj_id: object {track.obj_id} has no prompts; add one first")

    def _memory_of_prompt(self, frame: int, out: FrameOutput) -> torch.Tensor:
        s = self.cfg.image_size
        high = F.interpolate(out.low_res[None], (s, s), mode="bilinear", align_corners=False)
        feats = self._frame_features(frame)
        with self._autocast():
            mem = self.model.encode_memory(feats.fpn[2], high, out.object_logit.view(1, 1), True)
        return mem[0].to(torch.bfloat16)

    # -- propagation ---------------------------------------------------------

    def _order(self, start: int, reverse: bool, max_frames: int | None) -> list[int]:
        n = self.num_frames if max_frames is None else max_frames
        if reverse:
            return list(range(start, max(start - n, -1), -1))
        return list(range(start, min(start + n, self.num_frames)))

    def _propagate_frame(self, frame: int, reverse: bool, upcoming) -> FrameResult:
        todo = [t for t in self._tracks.values() if frame not in t.cond and t.covers(frame)]
        groups: dict[tuple, list[tuple[ObjectTrack, MemoryContext]]] = {}
        for track in todo:
            ctx = self._context(track, frame, reverse)
            groups.setdefault(batch_key(ctx), []).append((track, ctx))
        if groups:
            feats = self._frame_features(frame, upcoming)
            cap = max_batch(self.device)
            for members in groups.values():
                for i in range(0, len(members), cap):
                    self._track_group(feats, frame, members[i : i + cap])
        for track in self._tracks.values():
            if track.covers(frame):
                track.tracked[frame] = reverse
        return self._frame_result(frame)

    def _track_group(self, feats: ImageFeatures, frame: int, members) -> None:
        """Run objects with the same memory layout as one batch."""
        batched = self._batch([ctx for _, ctx in members])
        with self._autocast():
            out = self.model.track_step(feats, len(members), batched, run_memory=True)
        for i, (track, _) in enumerate(members):
            self._bank.put(track, frame, self._frame_output(out, i))

    def _batch(self, ctxs: list[MemoryContext]) -> MemoryContext:
        """Stack per-object contexts of one layout into a batch (B on dim 0)."""
        first = ctxs[0]
        return MemoryContext(
            spatial=[
                (t_pos, torch.stack([c.spatial[i][1] for c in ctxs]))
                for i, (t_pos, _) in enumerate(first.spatial)
            ],
            pointers=[
                (
                    _shared_or_each([c.pointers[i][0] for c in ctxs], self.device),
                    torch.stack([c.pointers[i][1] for c in ctxs]),
                )
                for i in range(len(first.pointers))
            ],
            num_frames=self.num_frames,
        )

    def _context(self, track: ObjectTrack, frame: int, reverse: bool) -> MemoryContext:
        """The memories and pointers one object attends to on ``frame`` (unbatched)."""

        def recent(t: int):
            out = self._bank.get(track, t, self.device)
            return None if out is None else (out.memory, out.obj_ptr)

        cond = {t: (out.memory, out.obj_ptr) for t, out in track.cond.items()}
        return select_memories(self.cfg, cond, recent, frame, self.num_frames, reverse)

    # -- helpers -------------------------------------------------------------

    def _frame_features(self, frame: int, upcoming=()) -> ImageFeatures:
        feats = self._features.get(frame)
        if feats is None and self._disk_features is not None:
            feats = self._disk_features.load(frame, self._positions(), self.device)
        if feats is None:
            x = self.source.get(frame, upcoming).to(self.device)
            with self._autocast():
                feats = self.model.encode_image(x)
            if self._disk_features is not None:
                self._disk_features.save(frame, feats)
        if frame not in self._features:
            self._features[frame] = feats
            while len(self._features) > self._feature_cache_size:
                self._features.popitem(last=False)
        self._features.move_to_end(frame)
        return feats

    def _positions(self) -> list[torch.Tensor]:
        """The (1, C, h, w) sine encodings of the three feature levels (constant)."""
        pos = self.model.image_encoder.neck.pos
        s = self.cfg.image_size
        return [pos(s // k, s // k, self.device)[None] for k in (4, 8, 16)]

    def _frame_output(self, out, i: int) -> FrameOutput:
        low = out.low_res[i].float()
        if self.fill_hole_area > 0:
            low = fill_small_holes(low, self.fill_hole_area)
        memory = None if out.memory is None else out.memory[i].to(torch.bfloat16)
        iou = None if out.ious is None else out.ious[i].float()
        stability = None if out.stability is None else out.stability[i].float()
        return FrameOutput(
            low, out.obj_ptr[i].float(), out.object_logits[i].float(), memory, iou, stability
        )

    def _frame_result(self, frame: int) -> FrameResult:
        h, w = self.frame_shape
        q = self.cfg.low_res_size
        lows, scores, ious, stability = [], [], [], []
        for track in self._tracks.values():
            out = self._output(track, frame)
            if out is None:
                lows.append(torch.full((1, q, q), NO_OBJECT_LOGIT, device=self.device))
                scores.append(NO_OBJECT_LOGIT)
            else:
                lows.append(out.low_res)
                scores.append(float(out.object_logit.reshape(-1)[0]))
            ious.append(_scalar(None if out is None else out.iou))
            stability.append(_scalar(None if out is None else out.stability))
        if not lows:
            return FrameResult.empty(frame, (h, w))
        return FrameResult(
            frame,
            self.obj_ids,
            torch.stack(lows)[:, 0].float().cpu().numpy(),
            np.asarray(scores, np.float32),
            np.asarray(ious, np.float32),
            np.asarray(stability, np.float32),
            (h, w),
        )

    def _autocast(self):
        return autocast(self.device, self.dtype)


CPU_MAX_BATCH = 8  # see max_batch


def max_batch(device: torch.device) -> int:
    """Most objects tracked in one batch. On a CPU, larger batches were slower per
    object (their attention maps leave the cache; benchmarks/bench_batching.py);
    a GPU takes them all at once."""
    return CPU_MAX_BATCH if torch.device(device).type == "cpu" else 1 << 30


def batch_key(ctx: MemoryContext) -> tuple:
    """Objects whose contexts share this key run as one batch: the same memory
    positions and the same number of pointers. Pointer offsets may differ within
    a batch (see :class:`MemoryContext`), so objects prompted on different frames
    (daughters, cells found later) still run together."""
    return tuple(p for p, _ in ctx.spatial), len(ctx.pointers)


def _cover(track: ObjectTrack, frame: int) -> None:
    """A prompt outside an object's span widens the span to reach it."""
    if track.span is not None and not track.covers(frame):
        track.span = (min(track.span[0], frame), max(track.span[1], frame))


def _shared_or_each(offsets: list[int], device) -> int | torch.Tensor:
    """One pointer offset for a batch: an int where all agree, else a (B,) tensor."""
    if all(o == offsets[0] for o in offsets):
        return offsets[0]
    return torch.tensor(offsets, device=device)


def _scalar(value: torch.Tensor | None) -> float:
    """A one-element tensor as a float; NaN for None."""
    return float("nan") if value is None else float(value.reshape(-1)[0])


OBJ_ID_MAX = 2**31 - 1  # label images are int32


def _check_obj_id(obj_id) -> int:
    """Object ids are label values: 1..2**31-1 (0 is the background of a label image)."""
    if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)):
        raise InputError(f"obj_id: must be an integer, got {obj_id!r}")
    if not 1 <= obj_id <= OBJ_ID_MAX:
        raise InputError(
            f"obj_id: must be in 1..{OBJ_ID_MAX} (0 is the background of a label image), "
            f"got {obj_id}"
        )
    return int(obj_id)
