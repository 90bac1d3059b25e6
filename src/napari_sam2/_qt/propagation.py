"""Propagation runs of the SAM 2 widget (one part of it).

Plans come from :mod:`napari_sam2.engine.plans`; the controller runs them in a
worker and each result arrives here on the UI thread, is written by the
:class:`~napari_sam2._qt.label_writer.LabelWriter` and shown in the propagate
panel. Corrections that re-propagate are collected here until they run.
"""

from __future__ import annotations

from collections.abc import Callable

from ..engine.plans import merge_corrections, plan_passes
from .controller import Eta, Sam2Controller
from .jobs import Job, JobQueue
from .label_writer import LabelWriter
from .layers import LayerSet

TRACK_ALL = "track_all"  # automatic tracking (:mod:`napari_sam2._qt.automatic`)
# Job kinds that show progress here and stop with Cancel.
KINDS = ("propagate", "repropagate", TRACK_ALL)


class Propagation:
    """Runs propagations and re-propagations; reports progress in ``panel``.

    ``on_error(exc)`` shows a failure; ``on_written(n)`` is called after a run
    that wrote ``n`` > 0 frames (the widget autosaves then). Other parts of the
    widget follow the runs through ``run_listeners`` (called with the run's
    passes when it starts) and ``result_listeners`` (called with each
    ``(FrameResult, reverse)`` after it is written).
    """

    def __init__(
        self,
        controller: Sam2Controller,
        jobs: JobQueue,
        layers: LayerSet,
        writer: LabelWriter,
        panel,
        on_error: Callable[[BaseException], None],
        on_written: Callable[[int], None],
    ) -> None:
        self._controller = controller
        self._jobs = jobs
        self._layers = layers
        self._writer = writer
        self._panel = panel
        self._on_error = on_error
        self._on_written = on_written
        self.corrections: list[tuple[int, bool | None]] = []  # not yet re-propagated
        self.eta: Eta | None = None
        self._seen: set[int] = set()
        self.run_listeners: list[Callable[[list], None]] = []
        self.result_listeners: list[Callable[[object, bool], None]] = []
        self.end_listeners: list[Callable[[], None]] = []  # a propagation run ended

    def run(self, direction: str, first: int | None = None, last: int | None = None) -> None:
        """Track every object from the prompted frames over [first, last] (default: the panel's)."""
        lo, hi = self._panel.frame_range(self._layers.num_frames())
        lo = lo if first is None else int(first)
        hi = hi if last is None else int(last)
        self._controller.last_range = (lo, hi)
        passes = plan_passes(direction, self._controller.prompted_frames(), lo, hi)
        self._submit("propagate", passes)

    def add_corrections(self, corrections) -> None:
        """Corrections to re-propagate; a running re-propagation is outdated by them."""
        self._jobs.cancel(("repropagate",))
        self.corrections += corrections

    def repropagate(self) -> None:
        """Re-track from every pending correction, one pass per direction."""
        lo, hi = self._controller.last_range or (0, self._layers.num_frames() - 1)
        merged = merge_corrections(self.corrections, lo, hi)
        if merged:
            self._submit("repropagate", merged)

    def cancel(self) -> None:
        """Stop after the frame being computed; forget pending corrections."""
        self.corrections.clear()
        running = self._jobs.current
        if running is not None and running.kind in KINDS:
            # A frame cannot be interrupted mid-computation: say what we wait for.
            self._panel.status.setText(
                "Cancelling: waiting for the frame being computed to finish..."
            )
        self._jobs.cancel(KINDS)

    def running(self) -> bool:
        """A propagation runs or waits in the queue."""
        current = self._jobs.current
        return bool(current and current.kind in KINDS) or any(
            self._jobs.pending(kind) for kind in KINDS
        )

    def _submit(self, kind: str, passes) -> Job:
        # "both" meets its start frame twice: count frames, not steps.
        total = len({f for p in passes for f in p.frames() if p.first <= f <= p.last})
        job = Job(
            kind,
            self._controller.propagate,
            (passes,),
            on_start=lambda: self._started(total, passes),
            on_yield=self._arrived,
            on_error=self._on_error,
            on_finish=lambda: self._finished(job),
        )
        return self._jobs.submit(job)

    def _started(self, total: int, passes) -> None:
        self.begin(total)
        for listener in self.run_listeners:
            listener(list(passes))

    # -- progress, shared with automatic tracking -------------------------------

    def begin(self, total: int) -> None:
        """A run of ``total`` frames starts: one undo step, progress bar, ETA, Cancel."""
        self._writer.open_step()  # all frames of one run are one undo step
        self.eta = Eta(total)
        self._seen = set()
        bar = self._panel.progress
        bar.setRange(0, max(1, total))
        bar.setValue(0)
        self._panel.cancel.setEnabled(True)
        self._panel.status.setText(self.eta.text())

    def frame_done(self, frame: int, what: str = "Frame") -> None:
        """Count ``frame`` once (progress and ETA); ``what`` starts the status text."""
        if self.eta is None or frame in self._seen:
            return
        self._seen.add(frame)
        self.eta.step()
        self._panel.progress.setValue(self.eta.done)
        running = self._jobs.current
        if running is not None and running.cancelled:
            text = f"Cancelling: frame {frame} done, stopping..."
        else:
            text = f"{what} {frame}: " + self.eta.text()
        self._panel.status.setText(text)

    def end(self, job: Job, what: str = "") -> int:
        """A run ended: close its undo step, say how it ended; returns the frames written."""
        self._writer.close_step()
        done = self.eta.done if self.eta else 0
        how = "Cancelled" if job.cancelled else ("Failed" if job.error else "Done")
        self._panel.status.setText(f"{what}{how}: {done} frames written")
        if done:
            self._on_written(done)
        return done

    def _arrived(self, item) -> None:
        result, reverse = item
        self._writer.write(result, result.predicted_ids())
        self._controller.record_reached(result, reverse)
        for listener in self.result_listeners:
            listener(result, reverse)
        self.frame_done(result.frame)

    def _finished(self, job: Job) -> None:
        if not job.started:
            return  # dropped from the queue before it ran
        if job.kind == "repropagate" and not job.cancelled:
            self.corrections.clear()  # done (or failed: do not retry forever)
        self.end(job)
        for listener in self.end_listeners:
            listener()
