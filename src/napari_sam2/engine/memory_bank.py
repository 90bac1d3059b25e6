"""Per-object tracking state: prompts, conditioning outputs and a bounded memory bank.

The model only reads back, for each object: every conditioning (prompted)
frame, the memories of the previous ``num_maskmem - 1`` frames and the object
pointers of the previous ``max_obj_ptrs_in_encoder - 1`` frames. So only a
small window of recent outputs stays in RAM; older ones are spilled to a
session folder on disk (one small file per frame and object), from where a
later correction or a reverse pass near a prompted frame reads them back. RAM
use therefore does not grow with the video's length.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .prompts import PointPrompt


@dataclass
class FrameOutput:
    """One object's prediction on one frame.

    ``low_res``: (1, S/4, S/4) float32 logits (holes filled); ``obj_ptr``: (C,);
    ``object_logit``: (1,); ``memory``: (mem_dim, S/16, S/16) bfloat16, or None
    until the memory encoder has run. ``iou`` and ``stability``: () the
    decoder's predicted IoU and the mask's stability score, None for a mask
    prompt used as the prediction.
    """

    low_res: torch.Tensor
    obj_ptr: torch.Tensor
    object_logit: torch.Tensor
    memory: torch.Tensor | None = None
    iou: torch.Tensor | None = None
    stability: torch.Tensor | None = None

    def to_dict(self) -> dict:
        d = {"low_res": self.low_res, "obj_ptr": self.obj_ptr, "object_logit": self.object_logit}
        for key in ("memory", "iou", "stability"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d


class SpillStore:
    """Frame outputs evicted from RAM, one file each in a private temp folder."""

    def __init__(self, root: Path | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="napari-sam2-", dir=root))
        self._keys: set[tuple[int, int]] = set()
        # A session that is never closed still leaves no folder behind.
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.dir, ignore_errors=True)

    def put(self, obj_id: int, frame: int, out: FrameOutput) -> None:
        cpu = {k: v.detach().cpu() for k, v in out.to_dict().items()}
        torch.save(cpu, self.dir / f"{obj_id}_{frame}.pt")
        self._keys.add((obj_id, frame))

    def get(self, obj_id: int, frame: int, device) -> FrameOutput | None:
        if (obj_id, frame) not in self._keys:
            return None
        d = torch.load(self.dir / f"{obj_id}_{frame}.pt", map_location=device, weights_only=True)
        return FrameOutput(
            d["low_res"],
            d["obj_ptr"],
            d["object_logit"],
            d.get("memory"),
            d.get("iou"),
            d.get("stability"),
        )

    def discard(self, obj_id: int, frame: int | None = None) -> None:
        """Forget one spilled output, or all of an object's (``frame=None``)."""
        if frame is not None:
            keys = [(obj_id, frame)] if (obj_id, frame) in self._keys else []
        else:  # rare (an object removed): a scan is fine
            keys = [k for k in self._keys if k[0] == obj_id]
        for k in keys:
            self._keys.discard(k)
            (self.dir / f"{k[0]}_{k[1]}.pt").unlink(missing_ok=True)

    def close(self) -> None:
        self._keys.clear()
        self._cleanup()


@dataclass
class ObjectTrack:
    """Everything the session knows about one object id.

    ``points``/``masks``: prompts per frame ((row, col) points; boolean masks at
    frame size). ``cond``: outputs of conditioning frames. ``pending``: outputs
    of prompts not yet folded into memory (frame -> (output, is_cond)).
    ``recent``: the RAM window of non-conditioning outputs. ``tracked``: frame
    -> whether it was last tracked in reverse. ``span``: (first, last) frames
    the object may exist on (inclusive), or None for the whole stack; outside
    it the object is neither tracked nor drawn (a mother after its division, a
    cell before it entered).
    """

    obj_id: int
    points: dict[int, PointPrompt] = field(default_factory=dict)
    masks: dict[int, torch.Tensor] = field(default_factory=dict)
    cond: dict[int, FrameOutput] = field(default_factory=dict)
    pending: dict[int, tuple[FrameOutput, bool]] = field(default_factory=dict)
    recent: OrderedDict[int, FrameOutput] = field(default_factory=OrderedDict)
    tracked: dict[int, bool] = field(default_factory=dict)
    span: tuple[int, int] | None = None

    def prompt_frames(self) -> set[int]:
        return set(self.points) | set(self.masks)

    def covers(self, frame: int) -> bool:
        """Whether ``frame`` lies in the object's span (always, without one)."""
        return self.span is None or self.span[0] <= frame <= self.span[1]


class MemoryBank:
    """Non-conditioning outputs of all objects: a RAM window plus the spill store."""

    def __init__(self, window: int, spill: bool = True, spill_root: Path | None = None) -> None:
        self.window = window
        self._spill = SpillStore(spill_root) if spill else None

    def put(self, track: ObjectTrack, frame: int, out: FrameOutput) -> None:
        track.recent[frame] = out
        track.recent.move_to_end(frame)
        if self._spill is not None:
            self._spill.discard(track.obj_id, frame)
        while len(track.recent) > self.window:
            old, old_out = track.recent.popitem(last=False)
            if self._spill is not None:
                self._spill.put(track.obj_id, old, old_out)

    def get(self, track: ObjectTrack, frame: int, device) -> FrameOutput | None:
        out = track.recent.get(frame)
        if out is None and self._spill is not None:
            out = self._spill.get(track.obj_id, frame, device)
        return out

    def pop(self, track: ObjectTrack, frame: int, device) -> FrameOutput | None:
        out = track.recent.pop(frame, None)
        if out is None and self._spill is not None:
            out = self._spill.get(track.obj_id, frame, device)
        if self._spill is not None:
            self._spill.discard(track.obj_id, frame)
        return out

    def forget(self, track: ObjectTrack) -> None:
        track.recent.clear()
        if self._spill is not None:
            self._spill.discard(track.obj_id)

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
