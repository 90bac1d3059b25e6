"""Automatic mode of the SAM 2 widget: "Segment all, this frame" and "Track all cells".

**Segment all.** The :class:`~napari_sam2.tracking.mask_generator.MaskGenerator`
finds every cell on one frame (in a worker). Each new cell (rules in
:mod:`napari_sam2._qt.automatic_rules`) becomes an object with an id above
every label in the layer and its unlabelled pixels as mask prompt, as if it
had been painted and sent with "Use painted mask". Its preview is written
like any prompt's (one undo step for the frame), and it then propagates,
takes corrective clicks and can be removed like a manual object.

**Track all cells.** :func:`~napari_sam2.tracking.tracker.iter_tracking`
runs in a worker on its own :class:`~napari_sam2.engine.session.VideoSession`
(the widget's objects and session are untouched) from a start frame to the
last. Each frame is written when it is final, with ids above every label in
the layer and into background pixels only; the whole run is one undo step,
with the progress bar, ETA and Cancel of the Propagate panel
(:class:`~napari_sam2._qt.propagation.Propagation`). A complete run adds (or
updates) a Tracks layer with the tracks and the division graph. Each frame's
engine scores reach the review queue, so its tracks are reviewed like manual
objects. A track the
user then prompts (a click, a box, a painted mask) is handed to the widget's
session as an object limited to its own frames (see
:class:`~napari_sam2._qt.automatic_rules.TrackHandover`): it is corrected,
re-propagated and removed like a manual object.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..errors import InputError, Sam2Error
from ..files.stacks import Stack, frame_index
from .automatic_rules import (
    TrackHandover,
    background_write,
    check_ids_fit,
    id_offset,
    new_cells,
    shift_ids,
    tracks_layer_data,
)
from .controller import Sam2Controller
from .jobs import Job, JobQueue
from .layers import LayerSet, image_frames
from .prompt_sync import PromptSync
from .propagation import TRACK_ALL, Propagation

SEGMENT_ALL = "segment_all"
TRACKS_SUFFIX = " SAM2 tracks"


class AutomaticPanel(QGroupBox):
    """The two automatic buttons and a status line (a plain view)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Automatic: every cell", parent)
        self.segment_all = QPushButton("Segment all, this frame")
        self.segment_all.setToolTip(
            "Find every cell on the current frame with SAM 2's mask generator; each new "
            "cell becomes an object with a mask prompt (labelled pixels are kept)"
        )
        self.track_all = QPushButton("Track all cells")
        self.track_all.setToolTip(
            "Find and track every cell from the current frame on, with new and dividing "
            "cells; writes background pixels only (one undo step) and adds a Tracks layer. "
            "Progress and Cancel are in the Propagate panel"
        )
        self.divide = QCheckBox("Cells divide")
        self.divide.setChecked(True)
        self.divide.setToolTip(
            "Track all cells links daughters to mothers. Untick for cells that do not "
            "divide: a mask that falls apart then keeps its id, and no division is made"
        )
        # (label, the cue's name in TrackConfig's cue_settings)
        self.cue = QComboBox()
        self.cue.addItem("signal drops (nuclear marker)", "dimming")
        self.cue.addItem("mother is round (other markers)", "rounding")
        self.cue.setToolTip(
            "The sign of mitosis a division needs. Nuclear markers: the signal under the "
            "mother's mask drops as it divides (condensed chromatin split in two). Other "
            "markers (cytoplasm, nuclear import): the mother's mask was round"
        )
        self.divide.toggled.connect(self.cue.setEnabled)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(self.segment_all)
        row.addWidget(self.track_all)
        layout.addLayout(row)
        cues = QHBoxLayout()
        cues.addWidget(self.divide)
        cues.addWidget(QLabel("cue:"))
        cues.addWidget(self.cue, 1)
        layout.addLayout(cues)
        layout.addWidget(self.status)


class Automatic:
    """Runs "Segment all" and "Track all cells" for the widget; shows them in ``panel``.

    After a run: ``new_ids`` (objects the last "Segment all" added), ``result``
    (the last complete :class:`~napari_sam2.tracking.tracker.TrackingResult`,
    track ids from 1) and ``offset`` (added to its ids when written).
    """

    def __init__(
        self,
        viewer,
        controller: Sam2Controller,
        jobs: JobQueue,
        layers: LayerSet,
        propagation: Propagation,
        prompts: PromptSync,
        panel: AutomaticPanel,
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._viewer = viewer
        self._controller = controller
        self._jobs = jobs
        self._layers = layers
        self._propagation = propagation
        self._prompts = prompts
        self._panel = panel
        self._on_error = on_error
        self.new_ids: list[int] = []
        self.result = None
        self.offset = 0
        self._target = None  # (labels layer, stack axis) a Track all run writes into
        # Told when a run starts (no argument) and of each frame's engine result,
        # ids as written, as (FrameResult, reverse=False): the review queue.
        self.run_listeners: list[Callable[[], None]] = []
        self.result_listeners: list[Callable[[object, bool], None]] = []

    # ===================================================================== segment all

    def segment_all(self, frame: int, config=None) -> Job:
        """Queue the generator on ``frame``; new cells become objects (see the module)."""
        from ..tracking.decisions import TrackConfig

        ctrl = self._controller
        model = self._need_model()
        stack = self._stack()
        cfg = config or TrackConfig()

        def work():
            from ..tracking.mask_generator import MaskGenerator

            limits = _window(ctrl.session)
            return MaskGenerator(model, cfg.generator).generate(stack[frame], limits)

        self.new_ids = []
        self._panel.segment_all.setEnabled(False)
        self._panel.status.setText(f"Segment all: finding cells on frame {frame}...")
        job = Job(
            SEGMENT_ALL,
            work,
            on_done=lambda found: self._found(frame, found, cfg),
            on_error=self._failed,
            on_finish=lambda: self._panel.segment_all.setEnabled(True),
        )
        return self._jobs.submit(job)

    def _found(self, frame: int, found, cfg) -> None:
        labels, ctrl = self._layers.labels, self._controller
        if labels is None:
            return
        current = np.asarray(labels.data[frame_index(self._layers.axis, frame)])
        masks = new_cells(found, current, cfg)
        first = id_offset(np.max(labels.data), ctrl.objects) + 1
        try:
            check_ids_fit(first + len(masks) - 1, labels.data.dtype)
        except Sam2Error as exc:
            self._failed(exc)
            return
        for i, mask in enumerate(masks):
            obj = ctrl.add_object(first + i)
            # A fresh id: no pixel was painted with it, so nothing of it is kept.
            ctrl.written.add(obj)
            ctrl.painted[obj] = {}
            ctrl.set_mask_prompt(frame, obj, mask)
            self.new_ids.append(obj)
        self._panel.status.setText(
            f"Segment all: {len(masks)} new cells on frame {frame} ({len(found)} found)"
        )
        self._prompts.refresh_objects()
        self._prompts.sync()  # the previews: one write (one undo step) for the frame

    # ===================================================================== track all

    def track_all_cells(self, start: int, config=None) -> Job:
        """Queue automatic tracking from ``start`` to the last frame (see the module)."""
        from ..tracking.decisions import TrackConfig, cue_settings

        model = self._need_model()
        stack = self._stack()
        dtype = self._controller.precision
        panel = self._panel
        cfg = config or TrackConfig(
            divisions=panel.divide.isChecked(), **cue_settings(panel.cue.currentData())
        )
        sessions: list = []

        def work():
            from ..engine.session import VideoSession
            from ..tracking.mask_generator import MaskGenerator
            from ..tracking.tracker import iter_tracking

            # Forward only: memories older than the model's window are never read again.
            session = VideoSession(model, stack, dtype=dtype, spill=False)
            sessions.append(session)
            steps = iter_tracking(session, MaskGenerator(model, cfg.generator), cfg, start)
            return (yield from _final_frames(steps))

        def finish() -> None:
            for session in sessions:  # also after the widget was deleted
                session.close()
            if _alive(self._panel) and job.started:
                self._target = None
                self._propagation.end(job, "Track all: ")

        job = Job(
            TRACK_ALL,
            work,
            on_start=lambda: self._track_started(stack.num_frames - start),
            on_yield=self._track_frame,
            on_done=self._tracked,
            on_error=self._failed,
            on_finish=finish,
            cleanup=True,
        )
        return self._jobs.submit(job)

    def _track_started(self, total: int) -> None:
        labels = self._layers.labels
        self._target = (labels, self._layers.axis)
        biggest = 0 if labels is None else np.max(labels.data)
        self.offset = id_offset(biggest, self._controller.objects)
        self.result = None
        self._panel.status.setText(f"Track all: ids from {self.offset + 1}")
        for listener in self.run_listeners:
            listener()
        self._propagation.begin(total)  # one undo step, progress bar, ETA, Cancel

    def _track_frame(self, item) -> None:
        frame, frame_labels, propagated = item
        lay = self._layers
        target = self._target
        if lay.labels is None or target is None or target[0] is not lay.labels:
            return  # another image was chosen while the frame was computed
        if target[1] != lay.axis:
            return  # another stack axis was chosen
        predicted = shift_ids(frame_labels, self.offset)
        try:
            check_ids_fit(int(predicted.max(initial=0)), lay.labels.data.dtype)
        except Sam2Error as exc:
            self._failed(exc)
            self._jobs.cancel((TRACK_ALL,))
            return
        current = np.asarray(lay.labels.data[frame_index(lay.axis, frame)])
        change = background_write(current, predicted, lay.axis, frame)
        if change is not None:
            lay.labels.data_setitem(*change)
        if propagated is not None:  # the tracks' scores, in the ids as written
            shifted = propagated.with_ids(self.offset + i for i in propagated.obj_ids)
            for listener in self.result_listeners:
                listener(shifted, False)
        self._propagation.frame_done(frame, "Track all, frame")

    def _tracked(self, result) -> None:
        if result is None:
            return
        self.result = result
        # A track the user prompts from now on is corrected by the interactive session.
        self._controller.handover = TrackHandover(result.labels, result.lineage, self.offset)
        from ..tracking.tracker import counts_text

        n = len(result.lineage)
        found = counts_text(n, len(result.divisions()))  # divisions: mothers
        text = f"Track all: {found}, ids from {self.offset + 1}"
        if not self.show_tracks():
            text += " (no Tracks layer: time is not the first axis)" if n else ""
        self._panel.status.setText(text)

    def track_removed(self, obj: int) -> None:
        """A written track ``obj`` was removed: it leaves ``result`` and the Tracks layer
        (its daughters lose their mother link)."""
        result = self.result
        tid = int(obj) - self.offset
        if result is None or tid not in result.lineage:
            return
        lineage = {
            k: (s, e, 0 if p == tid else p) for k, (s, e, p) in result.lineage.items() if k != tid
        }
        labels = np.where(result.labels == tid, 0, result.labels).astype(np.int32)
        if not self._replace_result(labels, lineage) and not lineage:
            self._remove_tracks_layer()

    def corrected_tracks_moved(self) -> None:
        """A propagation ended: tracks handed to the session may have new masks. The
        result and the Tracks layer take those tracks' pixels from the labels layer."""
        result, lay = self.result, self._layers
        if result is None or lay.labels is None or lay.axis != 0:
            return
        ids = sorted({o - self.offset for o in self._controller.frame_ranges} & set(result.lineage))
        if not ids:
            return
        written = np.asarray(lay.labels.data)
        if written.shape != result.labels.shape:
            return
        labels = result.labels.copy()
        lineage = dict(result.lineage)
        for tid in ids:
            labels[labels == tid] = 0
            mine = written == tid + self.offset
            labels[mine] = tid
            frames = np.flatnonzero(mine.any(axis=(1, 2)))
            if len(frames):
                lineage[tid] = (int(frames[0]), int(frames[-1]), lineage[tid][2])
        self._replace_result(labels, lineage)

    def _replace_result(self, labels: np.ndarray, lineage) -> bool:
        """``result`` becomes ``labels`` (T, H, W) and ``lineage`` (the scores stay); the
        handover reads the new labels, and the Tracks layer shows them (see show_tracks)."""
        from ..tracking.tracker import TrackingResult

        self.result = TrackingResult(labels, lineage, self.result.scores)
        if self._controller.handover is not None:
            self._controller.handover.labels = labels
        return self.show_tracks()

    def _remove_tracks_layer(self) -> None:
        lay = self._layers
        if lay.image is None:
            return
        layer = next(
            (x for x in self._viewer.layers if x.name == lay.image.name + TRACKS_SUFFIX), None
        )
        if layer is not None:
            self._viewer.layers.remove(layer)

    def show_tracks(self) -> bool:
        """Add or update the image's Tracks layer from ``result``; False when there is none."""
        lay, result = self._layers, self.result
        if result is None or not result.lineage or lay.image is None or lay.axis != 0:
            return False  # a Tracks layer takes time as its first axis
        data, graph = tracks_layer_data(result.labels, result.lineage, self.offset)
        name = lay.image.name + TRACKS_SUFFIX
        layer = next((x for x in self._viewer.layers if x.name == name), None)
        if type(layer).__name__ == "Tracks":
            layer.data = data
            layer.graph = graph
        else:
            if layer is not None:
                self._viewer.layers.remove(layer)
            self._viewer.add_tracks(
                data, graph=graph, name=name, scale=lay.image.scale, translate=lay.image.translate
            )
        return True

    # ===================================================================== helpers

    def _failed(self, exc: BaseException) -> None:
        self._panel.status.setText("")
        self._on_error(exc)

    def _need_model(self):
        if self._controller.model is None:
            raise InputError("model: load a model first")
        return self._controller.model

    def _stack(self) -> Stack:
        data, rgb = image_frames(self._layers.image)
        return Stack(data, self._layers.axis, rgb=rgb)


def _final_frames(steps):
    """Yield iter_tracking's frames with the labels copied; return its result."""
    while True:
        try:
            item = next(steps)
        except StopIteration as stop:
            return stop.value
        yield item._replace(labels=np.array(item.labels, copy=True))


def _window(session):
    """The session's intensity window, so the generator sees frames as tracking does."""
    intensity = getattr(getattr(session, "source", None), "intensity", None)
    return None if intensity is None or intensity.is_rgb8 else intensity.limits


def _alive(widget) -> bool:
    """False once Qt has deleted ``widget``."""
    try:
        widget.objectName()
    except RuntimeError:
        return False
    return True
