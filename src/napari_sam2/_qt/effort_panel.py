"""Annotation effort of the session, counted as the user works (one part of the SAM 2 widget).

:class:`EffortTracker` keeps the session's
:class:`~napari_sam2.review.effort.EffortLog`. It is told every prompt state
the widget syncs (:class:`~napari_sam2.review.tally.PromptTally` turns the
differences into clicks, boxes and mask edits), every propagation run and
every review jump (both count for active time only), and shows the counts in
an :class:`EffortPanel`. A new session (another image) starts a new log; a
loaded session brings its saved ``effort.json`` back. Counting lives in
:mod:`napari_sam2.review`; this part only routes events and shows numbers.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtWidgets import QGridLayout, QGroupBox, QLabel, QWidget

from ..review.effort import EFFORT_FILE, EffortLog, EffortStats
from ..review.tally import PromptTally
from .controller import Sam2Controller, format_seconds
from .layers import LayerSet

__all__ = ["EFFORT_FILE", "EffortPanel", "EffortTracker", "stats_lines"]


def stats_lines(s: EffortStats) -> list[tuple[str, str]]:
    """(name, value) rows as the panel shows them (the paper's data-engine columns)."""
    return [
        ("Clicks", str(s.clicks)),
        ("Boxes", str(s.boxes)),
        ("Mask edits", str(s.mask_edits)),
        ("Edited frames", f"{s.edited_frames} ({s.edited_frames_pct:.1f} %)"),
        ("Clicks per clicked frame", f"{s.clicks_per_clicked_frame:.2f}"),
        ("Active time", f"{format_seconds(s.active_s)} ({s.active_s_per_frame:.1f} s/frame)"),
    ]


class EffortPanel(QGroupBox):
    """The session's effort statistics, one row each."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Effort", parent)
        self.setToolTip(
            "Counted from your prompts, as in the SAM 2 paper's data-engine table. Edited "
            "frames are (frame, object) pairs with a click, box or mask edit; active time "
            "leaves out gaps of over a minute. Saved with the session (effort.json)."
        )
        grid = QGridLayout(self)
        grid.setContentsMargins(4, 2, 4, 2)
        self.values: dict[str, QLabel] = {}
        for i, (name, _) in enumerate(stats_lines(EffortLog(1).stats())):
            grid.addWidget(QLabel(name), i // 2, 2 * (i % 2))
            value = QLabel("0")
            self.values[name] = value
            grid.addWidget(value, i // 2, 2 * (i % 2) + 1)

    def show_stats(self, s: EffortStats) -> None:
        for name, text in stats_lines(s):
            self.values[name].setText(text)


class EffortTracker:
    """The effort log of the widget's session, kept up to date and shown in ``panel``."""

    def __init__(
        self,
        controller: Sam2Controller,
        layers: LayerSet,
        panel: EffortPanel,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._controller = controller
        self._layers = layers
        self._panel = panel
        self._clock = clock
        self._tally = PromptTally()
        self._session_id: str | None = None
        self.log: EffortLog | None = None

    # -- events ---------------------------------------------------------------

    def prompts_synced(self, prompts: dict) -> None:
        """The prompt layers changed (or were synced): count what the user added."""
        if not self._current():
            return
        self._tally.update(prompts, self.log)
        self.show()

    def run_started(self, passes) -> None:
        """A propagation run: active time, not an edit."""
        if self.log is None or not self._current():
            return
        for p in passes:
            if 0 <= p.start < self.log.num_frames:
                self.log.record_propagation(p.start, p.reverse, p.written())
        self.show()

    def visited(self, frame: int, obj_id: int | None) -> None:
        """The user jumped to a (frame, object) from the review queue."""
        if self.log is not None and self._current() and 0 <= frame < self.log.num_frames:
            self.log.record_visit(frame, obj_id)
            self.show()

    def attached(self, prompts: dict) -> None:
        """The prompt layers of an image were attached: prompts already there are not counted.

        Another session (a new image) starts a new log.
        """
        if self._layers.image is None:
            return
        if self.log is None or self._session_id != self._controller.session_id:
            self.log = self._new_log(self._layers.num_frames())
            self._session_id = self._controller.session_id
        self._tally.prime(prompts)
        self.show()

    def restored(self, log: EffortLog | None, prompts: dict, session_id: str | None) -> None:
        """A saved session was loaded: its log (or a new one) and its prompts, not counted."""
        n = self._layers.num_frames()
        if log is None or log.num_frames != n:
            log = self._new_log(n, log)
        elif self._clock is not None:
            log.clock = self._clock
        self.log = log
        self._session_id = session_id
        self._tally.prime(prompts)
        self.show()

    # -- reading --------------------------------------------------------------

    def stats(self) -> EffortStats | None:
        """The session's counts now (None before an image is chosen)."""
        if self.log is None:
            return None
        self.log.num_objects = len(self._controller.objects)
        return self.log.stats()

    def to_dict(self) -> dict | None:
        """What is saved as ``effort.json`` (None: nothing to save yet)."""
        if self.log is None:
            return None
        self.log.num_objects = len(self._controller.objects)
        return self.log.to_dict()

    def show(self) -> None:
        stats = self.stats()
        if stats is not None:
            self._panel.show_stats(stats)

    # -- internals ------------------------------------------------------------

    def _new_log(self, n: int, old: EffortLog | None = None) -> EffortLog:
        log = EffortLog(max(1, n), clock=self._clock) if self._clock else EffortLog(max(1, n))
        for e in old.events if old is not None else ():
            frame = getattr(e, "frame", getattr(e, "start_frame", 0))
            if 0 <= frame < log.num_frames:
                log.add(e)
        return log

    def _current(self) -> bool:
        """Make sure the log belongs to the controller's session; False if none can."""
        if self._layers.image is None or self._layers.labels is None:
            return False
        n = self._layers.num_frames()
        if self.log is None or self._session_id != self._controller.session_id:
            self.log = self._new_log(n)
            self._session_id = self._controller.session_id
        elif self.log.num_frames != n:  # the stack axis changed
            self.log = self._new_log(n, self.log)
        return True
