"""Annotation effort, counted from recorded events, in the SAM 2 paper's data-engine terms.

An :class:`EffortLog` records what the annotator did (typed events with a
timestamp in seconds) and is saved with the session as ``effort.json``.
:meth:`EffortLog.stats` counts, exactly (nothing is estimated):

* ``clicks``, ``boxes``, ``mask_edits``: events of each kind;
* ``edited_frames_pct``: the (frame, object) pairs with at least one click, box
  or mask edit, as a percentage of ``frames x objects`` (the paper counts edited
  frames per masklet, i.e. per object);
* ``clicks_per_clicked_frame``: clicks / (frame, object) pairs with a click;
* ``active_s_per_frame``: active time / frames, where active time is the sum of
  the gaps between consecutive events of at most ``idle_s`` seconds
  (:data:`IDLE_SECONDS`, 60 s by default); a longer gap (a coffee break, the
  window left open) counts as idle and is left out entirely. Time before the
  first event and after the last is not counted.

Propagations and review jumps are events too: they count for active time but
are not edits.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import InputError
from ..files.headers import check_header

__all__ = [
    "EFFORT_FILE",
    "IDLE_SECONDS",
    "Box",
    "Click",
    "EffortLog",
    "EffortStats",
    "MaskEdit",
    "Propagation",
    "Visit",
]

EFFORT_FILE = "effort.json"
IDLE_SECONDS = 60.0  # a gap between two events longer than this is idle time
FORMAT = "napari-sam2 effort"
VERSION = 1


@dataclass(frozen=True)
class Click:
    """A point prompt: ``t`` seconds (any fixed origin), (row, col) pixels, positive or negative."""

    t: float
    frame: int
    obj_id: int
    row: float
    col: float
    positive: bool = True


@dataclass(frozen=True)
class Box:
    """A box prompt (row0, col0, row1, col1) pixels."""

    t: float
    frame: int
    obj_id: int
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class MaskEdit:
    """A painted or erased mask used as a prompt; ``pixels``: how many changed (0: unknown)."""

    t: float
    frame: int
    obj_id: int
    pixels: int = 0


@dataclass(frozen=True)
class Propagation:
    """A tracking run from ``start_frame`` over ``frames`` frames (not an edit)."""

    t: float
    start_frame: int
    reverse: bool
    frames: int


@dataclass(frozen=True)
class Visit:
    """The annotator jumped to a (frame, object), e.g. from the review queue (not an edit)."""

    t: float
    frame: int
    obj_id: int | None = None


Event = Click | Box | MaskEdit | Propagation | Visit
_KINDS: dict[str, type] = {
    "click": Click,
    "box": Box,
    "mask_edit": MaskEdit,
    "propagation": Propagation,
    "visit": Visit,
}
_KIND_OF = {cls: name for name, cls in _KINDS.items()}
EDITS = (Click, Box, MaskEdit)


@dataclass(frozen=True)
class EffortStats:
    """One session's effort (see the module doc for the definitions)."""

    frames: int
    objects: int
    clicks: int
    boxes: int
    mask_edits: int
    edited_frames: int
    edited_frames_pct: float
    clicked_frames: int
    clicks_per_clicked_frame: float
    active_s: float
    active_s_per_frame: float
    idle_gaps: int


@dataclass
class EffortLog:
    """The events of one annotation session, in the order they happened.

    ``num_frames``: frames in the stack; ``num_objects``: objects in the session
    (at least those edited; None: count the edited ones). ``clock`` gives the
    timestamps of the ``record_*`` methods: ``time.time`` by default, seconds
    since the epoch, so a session saved, reopened and annotated further keeps
    one time line (only differences matter).
    """

    num_frames: int
    num_objects: int | None = None
    events: list[Event] = field(default_factory=list)
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.num_frames, bool) or not isinstance(self.num_frames, int):
            raise InputError(f"num_frames: must be an integer, got {self.num_frames!r}")
        if self.num_frames < 1:
            raise InputError(f"num_frames: must be >= 1, got {self.num_frames}")
        if self.num_objects is not None and self.num_objects < 0:
            raise InputError(f"num_objects: must be >= 0, got {self.num_objects}")

    # -- recording -------------------------------------------------------------

    def add(self, event: Event) -> None:
        """Append an event (its own timestamp is kept)."""
        if type(event) not in _KIND_OF:
            raise InputError(f"event: not an effort event: {event!r}")
        frame = getattr(event, "frame", getattr(event, "start_frame", 0))
        if not 0 <= frame < self.num_frames:
            raise InputError(f"frame: {frame} is outside the {self.num_frames} frames of the log")
        self.events.append(event)

    def record_click(self, frame: int, obj_id: int, row: float, col: float, positive=True):
        self.add(
            Click(self.clock(), int(frame), int(obj_id), float(row), float(col), bool(positive))
        )

    def record_box(self, frame: int, obj_id: int, box) -> None:
        r0, c0, r1, c1 = (float(v) for v in box)
        self.add(Box(self.clock(), int(frame), int(obj_id), (r0, c0, r1, c1)))

    def record_mask_edit(self, frame: int, obj_id: int, pixels: int = 0) -> None:
        self.add(MaskEdit(self.clock(), int(frame), int(obj_id), int(pixels)))

    def record_propagation(self, start_frame: int, reverse: bool, frames: int) -> None:
        self.add(Propagation(self.clock(), int(start_frame), bool(reverse), int(frames)))

    def record_visit(self, frame: int, obj_id: int | None = None) -> None:
        self.add(Visit(self.clock(), int(frame), None if obj_id is None else int(obj_id)))

    # -- counting --------------------------------------------------------------

    def stats(self, idle_s: float = IDLE_SECONDS) -> EffortStats:
        """Count this session's effort; ``idle_s``: longest gap still counted as active."""
        if not idle_s > 0:
            raise InputError(f"idle_s: must be > 0, got {idle_s}")
        edits = [e for e in self.events if isinstance(e, EDITS)]
        clicks = [e for e in edits if isinstance(e, Click)]
        edited = {(e.frame, e.obj_id) for e in edits}
        clicked = {(e.frame, e.obj_id) for e in clicks}
        objects = max(self.num_objects or 0, len({e.obj_id for e in edits}))
        times = sorted(e.t for e in self.events)
        gaps = [b - a for a, b in zip(times, times[1:])]
        active = float(sum(g for g in gaps if g <= idle_s))
        pairs = self.num_frames * objects
        return EffortStats(
            frames=self.num_frames,
            objects=objects,
            clicks=len(clicks),
            boxes=sum(isinstance(e, Box) for e in edits),
            mask_edits=sum(isinstance(e, MaskEdit) for e in edits),
            edited_frames=len(edited),
            edited_frames_pct=100.0 * len(edited) / pairs if pairs else 0.0,
            clicked_frames=len(clicked),
            clicks_per_clicked_frame=len(clicks) / len(clicked) if clicked else 0.0,
            active_s=active,
            active_s_per_frame=active / self.num_frames,
            idle_gaps=sum(g > idle_s for g in gaps),
        )

    # -- saving ----------------------------------------------------------------

    def to_dict(self) -> dict:
        """JSON-ready: each event as its fields plus ``kind``."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "num_frames": self.num_frames,
            "num_objects": self.num_objects,
            "events": [{"kind": _KIND_OF[type(e)], **asdict(e)} for e in self.events],
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "effort log") -> EffortLog:
        """The inverse of :meth:`to_dict`; InputError naming ``source`` if malformed."""
        check_header(data, FORMAT, VERSION, "effort log", source)
        try:
            log = cls(int(data["num_frames"]), data.get("num_objects"))
            for d in data["events"]:
                log.add(_event(d))
            return log
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{source}: malformed effort log ({exc})") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON to ``path`` (a file, or a session folder: ``effort.json`` in it), atomically."""
        path = Path(path)
        if path.is_dir():
            path = path / EFFORT_FILE
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> EffortLog:
        """Read a log from a JSON file or a session folder holding ``effort.json``."""
        path = Path(path)
        if path.is_dir():
            path = path / EFFORT_FILE
        if not path.is_file():
            raise InputError(f"{path}: no such effort log")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read the effort log ({exc})") from None
        return cls.from_dict(data, str(path))


def _event(d: dict) -> Event:
    cls = _KINDS.get(d.get("kind"))
    if cls is None:
        raise ValueError(f"unknown event kind {d.get('kind')!r}")
    names = {f.name for f in fields(cls)}
    values = {k: v for k, v in d.items() if k in names}
    if "box" in values:
        values["box"] = tuple(float(v) for v in values["box"])
    return cls(**values)
