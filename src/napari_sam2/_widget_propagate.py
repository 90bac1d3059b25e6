"""Label writes and propagation (a mixin of the SAM 2 widget).

Results arrive from the job queue on the UI thread and are written into the
labels layer without touching pixels of ids that are not tracked objects, nor
pixels painted with an object's id before napari-sam2 first wrote that object;
a whole propagation is one undo step.
"""

from __future__ import annotations

import numpy as np

from ._controller import Eta, correction_plan, frame_index, label_write, painted_pixels
from ._widget_jobs import Job
from .errors import Sam2Error


class PropagationMixin:
    """Writing FrameResults into the labels layer, and running propagations."""

    # ===================================================================== labels

    def _write(self, result, tracked) -> None:
        """Write one frame's prediction without touching labels the user painted."""
        if self.labels is None:
            return
        ctrl = self.controller
        for obj in set(tracked) - ctrl.written:  # first write: the painted pixels stay the user's
            ctrl.painted[obj] = painted_pixels(self.labels.data, obj, self.axis)
            ctrl.written.add(obj)
        index = frame_index(self.axis, result.frame)
        current = np.asarray(self.labels.data[index])
        keep = ctrl.kept_pixels(result.frame)
        change = label_write(current, result.label_image(), tracked, self.axis, result.frame, keep)
        if change is not None:
            self.labels.data_setitem(*change)

    def _close_history(self) -> None:
        if self._history is not None:
            history, self._history = self._history, None
            history.__exit__(None, None, None)

    # ===================================================================== propagation

    def _repropagate(self, corrections) -> None:
        lo, hi = self.controller.last_range or (0, self._num_frames() - 1)
        passes = []
        for frame, reverse in corrections:
            passes += correction_plan(frame, reverse, lo, hi)
        fwd = [p for p in passes if not p.reverse]
        bwd = [p for p in passes if p.reverse]
        merged = [min(fwd, key=lambda p: p.start)] if fwd else []
        merged += [max(bwd, key=lambda p: p.start)] if bwd else []
        if merged:
            self._submit_propagation("repropagate", merged)

    def _submit_propagation(self, kind: str, passes) -> Job:
        # "both" meets its start frame twice: count frames, not steps.
        total = len({f for p in passes for f in p.frames() if p.first <= f <= p.last})
        job = Job(
            kind,
            self.controller.propagate,
            (passes,),
            on_start=lambda: self._propagation_started(total),
            on_yield=self._frame_arrived,
            on_error=self._error,
            on_finish=lambda: self._propagation_finished(job),
        )
        return self.jobs.submit(job)

    def _propagation_started(self, total: int) -> None:
        if self.labels is not None:
            # All frames of one propagation are one undo step.
            self._history = self.labels.block_history()
            self._history.__enter__()
        self._eta = Eta(total)
        self._seen_frames = set()
        bar = self.propagate_panel.progress
        bar.setRange(0, max(1, total))
        bar.setValue(0)
        self.propagate_panel.cancel.setEnabled(True)
        self.propagate_panel.status.setText(self._eta.text())

    def _frame_arrived(self, item) -> None:
        result, reverse = item
        self._write(result, predicted_ids(result))
        self.controller.record_reached(result, reverse)
        if self._eta is not None and result.frame not in self._seen_frames:
            self._seen_frames.add(result.frame)
            self._eta.step()
            self.propagate_panel.progress.setValue(self._eta.done)
            running = self.jobs.current
            if running is not None and running.cancelled:
                text = f"Cancelling: frame {result.frame} done, stopping..."
            else:
                text = f"Frame {result.frame}: " + self._eta.text()
            self.propagate_panel.status.setText(text)

    def _propagation_finished(self, job: Job) -> None:
        if not job.started:
            return  # dropped from the queue before it ran
        if job.kind == "repropagate" and not job.cancelled:
            self._corrections.clear()  # done (or failed: do not retry forever)
        self._close_history()
        done = self._eta.done if self._eta else 0
        what = "Cancelled" if job.cancelled else ("Failed" if job.error else "Done")
        self.propagate_panel.status.setText(f"{what}: {done} frames written")
        if done and self.session_panel.autosave.isChecked():
            try:
                self._autosave()
            except (Sam2Error, OSError) as exc:
                self._error(exc)


def predicted_ids(result) -> set[int]:
    """Objects that have a prediction on the result's frame.

    The engine reports an object it has nothing for on a frame (no prompt there
    and not propagated there, e.g. after a session was reloaded) with the
    score NO_OBJECT_LOGIT. Such an object's pixels on that frame (saved or
    painted) must stay: only objects with a prediction own their pixels.
    """
    from .modeling.sam2 import NO_OBJECT_LOGIT

    scores = np.asarray(result.object_scores, dtype=np.float64)
    return {o for o, s in zip(result.obj_ids, scores, strict=True) if s != NO_OBJECT_LOGIT}
