"""The "SAM 2 segmentation" dock widget.

The widget is built by composition from parts it owns, each given what it
needs explicitly:

- :class:`~napari_sam2._qt.controller.Sam2Controller`: the model, the session
  and the bookkeeping, without Qt; it decides which prompt edits reach the
  session and which correct tracked frames;
- :class:`~napari_sam2._qt.jobs.JobQueue`: compute in napari thread workers,
  one job at a time;
- :class:`~napari_sam2._qt.layers.LayerSet`: the image, its three SAM 2 layers
  and the stack axis;
- :class:`~napari_sam2._qt.label_writer.LabelWriter`,
  :class:`~napari_sam2._qt.propagation.Propagation`,
  :class:`~napari_sam2._qt.prompt_sync.PromptSync` and
  :class:`~napari_sam2._qt.session_store.SessionStore`;
- :class:`~napari_sam2._qt.automatic.Automatic` ("Segment all", "Track all cells");
- "Review and improve": :class:`~napari_sam2._qt.review_panel.ReviewNavigator`
  (the review queue), :class:`~napari_sam2._qt.effort_panel.EffortTracker`
  (effort statistics) and :class:`~napari_sam2._qt.finetune.Finetuner`
  (fine-tuning on sessions);
- the panels of :mod:`napari_sam2._qt.panels`.

The widget itself chooses the image, loads models, opens sessions and offers
every action as a method, for scripts and the napari console::

    widget.load_model("sam2.1_hiera_tiny")
    widget.add_point(frame=0, row=120, col=88)
    widget.propagate("both")
    widget.review.next()          # the most suspicious (frame, object)
    widget.save_session("/data/run1_session")
    widget.finetune(steps=200)    # a new checkpoint in the model picker
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from qtpy.QtCore import QEvent, QSize, Qt, Signal
from qtpy.QtWidgets import QMessageBox, QScrollArea, QVBoxLayout, QWidget

from ..errors import InputError, Sam2Error, one_line
from ..files.output_rules import check_session_folder
from ..files.session_files import session_id_of
from ..files.stacks import Stack, frame_index
from .automatic import Automatic, AutomaticPanel
from .controller import Sam2Controller, apply_frame_ranges
from .effort_panel import EFFORT_FILE, EffortPanel, EffortTracker
from .finetune import FinetunePanel, Finetuner
from .jobs import Job, JobQueue
from .label_writer import LabelWriter
from .layers import LayerSet, add_box_rows, image_frames, spatial_shape
from .panels import (
    DataPanel,
    ModelPanel,
    ObjectsPanel,
    PromptPanel,
    PropagatePanel,
    SessionPanel,
)
from .prompt_sync import PromptSync
from .propagation import KINDS as PROPAGATION_KINDS
from .propagation import Propagation
from .review_panel import REVIEW_FILE, ReviewNavigator, ReviewPanel
from .session_store import SessionStore


class Sam2Widget(QWidget):
    """Dock widget: model, image, prompts, objects, propagation and sessions."""

    _download = Signal(int, int)  # bytes done, total (-1: unknown); emitted from a worker

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)

        self.viewer = napari_viewer
        self.controller = Sam2Controller()
        self.jobs = JobQueue(self)
        self.layers = LayerSet()
        self._restoring = False  # a loaded session waits for its VideoSession
        self._saved_reached: dict[int, dict[int, bool]] = {}
        self._closed = False
        self._docked = False
        self.last_error: str | None = None

        self.model_panel = ModelPanel(*_checkpoint_choices())
        self.data_panel = DataPanel()
        self.prompt_panel = PromptPanel()
        self.objects_panel = ObjectsPanel()
        self.propagate_panel = PropagatePanel()
        self.session_panel = SessionPanel()
        self.review_panel = ReviewPanel()
        self.effort_panel = EffortPanel()
        self.finetune_panel = FinetunePanel()

        self.writer = LabelWriter(self.layers, self.controller)
        self.propagation = Propagation(
            self.controller,
            self.jobs,
            self.layers,
            self.writer,
            self.propagate_panel,
            on_error=self._error,
            on_written=self._written,
        )
        self.prompts = PromptSync(
            self.viewer,
            self.controller,
            self.jobs,
            self.layers,
            self.writer,
            self.propagation,
            self.prompt_panel,
            self.objects_panel,
            auto_repropagate=self.propagate_panel.auto.isChecked,
            on_error=self._error,
        )
        self.effort = EffortTracker(self.controller, self.layers, self.effort_panel)
        self.review = ReviewNavigator(
            self.viewer,
            self.controller,
            self.layers,
            self.review_panel,
            go_to=self.go_to,
            on_visit=self.effort.visited,
            on_count=lambda n: self._sections["review"].setText(
                f"Review and improve: {n} to check"
            ),
        )
        self.finetuner = Finetuner(
            self.controller,
            self.layers,
            self.model_panel.checkpoint,
            self.finetune_panel,
            on_error=self._error,
        )
        self.propagation.run_listeners += [self.review.run_started, self.effort.run_started]
        self.propagation.result_listeners.append(self.review.result)
        self.prompts.listeners += [self.effort.prompts_synced, self.review.prompts_synced]
        self.sessions = SessionStore(
            self.viewer,
            self.controller,
            self.jobs,
            self.layers,
            self.prompts,
            self.session_panel,
            on_error=self._error,
            extra_files=lambda: {
                EFFORT_FILE: self.effort.to_dict(),
                REVIEW_FILE: self.review.to_dict(),
            },
        )
        self.automatic_panel = AutomaticPanel()
        self.automatic = Automatic(
            self.viewer,
            self.controller,
            self.jobs,
            self.layers,
            self.propagation,
            self.prompts,
            self.automatic_panel,
            on_error=self._error,
        )
        # Track all's tracks are reviewed like manual objects.
        self.automatic.run_listeners.append(lambda: self.review.run_started(()))
        self.automatic.result_listeners.append(self.review.result)
        self.propagation.end_listeners.append(self.automatic.corrected_tracks_moved)
        self._build_layout()
        self._connect()
        self._refresh_images()
        self._device_changed(self.model_panel.device.currentText())

    # The layers the widget works on (read-only views of ``self.layers``).
    image = property(lambda self: self.layers.image)
    points = property(lambda self: self.layers.points)
    boxes = property(lambda self: self.layers.boxes)
    labels = property(lambda self: self.layers.labels)
    axis = property(lambda self: self.layers.axis)

    # ===================================================================== scripting API

    def load_model(
        self,
        name_or_path: str | os.PathLike,
        device: str = "auto",
        precision: str = "float32",
        image_size: int | None = None,
        wait: bool = True,
    ) -> None:
        """Load a registry checkpoint (downloaded once) or a local ``.pt`` file."""
        source = os.fspath(name_or_path)
        self.model_panel.device.setCurrentText(device)
        job = Job(
            "load",
            self.controller.load_model,
            (source, device, image_size, self._download_cb),
            on_start=lambda: self._busy_model(f"Loading {Path(source).name}..."),
            on_done=lambda model: self._model_loaded(model, source, device, precision),
            on_error=lambda exc: self._error(exc, self.model_panel.status),
            on_finish=lambda: self.model_panel.progress.setVisible(False),
        )
        self.jobs.submit(job)
        self._maybe_wait(wait)

    def add_point(
        self,
        frame: int,
        row: float,
        col: float,
        positive: bool = True,
        obj_id: int | None = None,
        wait: bool = True,
    ) -> None:
        """Click on (row, col) of ``frame`` for an object (default: the selected label)."""
        self._need_layers()
        self._check_inside("point", frame, [(row, col)])
        obj = self.prompts.object_for(obj_id)
        coords = self.layers.coords(frame, row, col)
        old = {"label": 1, "object": obj}
        self.points.feature_defaults = {"label": int(bool(positive)), "object": obj}
        try:
            self.points.add(coords)
        finally:
            self.points.feature_defaults = old
        self._maybe_wait(wait)

    def add_box(
        self, frame: int, row0: float, col0: float, row1: float, col1: float,
        obj_id: int | None = None, wait: bool = True,
    ) -> None:  # fmt: skip
        """A box prompt (two opposite corners) on ``frame``."""
        from ..files.prompt_files import BoxRow

        self._need_layers()
        self._check_inside("box", frame, [(row0, col0), (row1, col1)])
        obj = self.prompts.object_for(obj_id)
        add_box_rows(self.boxes, [BoxRow(frame, row0, col0, row1, col1, obj)], self.axis)
        self.boxes.feature_defaults = {"object": self.prompts.current_object()}
        self._maybe_wait(wait)

    def add_object(self, name: str | None = None, select: bool = True) -> int:
        """A new object with an unused id (above every label in the layer); returns its id."""
        self._need_layers()
        taken = [int(np.max(self.labels.data))] if np.size(self.labels.data) else []
        obj = self.controller.add_object(name=name, taken=taken)
        self.prompts.refresh_objects()
        if select:
            self.select_object(obj)
        return obj

    def select_object(self, obj_id: int) -> None:
        """Make ``obj_id`` the current object (the labels layer's selected label)."""
        self._need_layers()
        self.labels.selected_label = int(obj_id)

    def rename_object(self, obj_id: int, name: str) -> None:
        """Give an object a name (kept in the session; ids stay the label values)."""
        self.controller.add_object(int(obj_id), name=name)
        self.prompts.refresh_objects()

    def remove_object(self, obj_id: int, wait: bool = True) -> None:
        """Delete an object: its prompts, its session track and its pixels (one undo step)."""
        self._need_layers()
        obj = int(obj_id)
        self.prompts.delete(lambda key: key[1] == obj)
        self.controller.remove_object_prompts(obj)
        job = Job(
            "remove",
            self.controller.remove_object,
            (obj,),
            on_done=lambda results: self.writer.remove_object(obj, results),
            on_error=self._error,
        )
        self.jobs.submit(job)
        self.prompts.refresh_objects()
        self.review.object_removed(obj)
        self.automatic.track_removed(obj)
        self._maybe_wait(wait)

    def use_painted_mask(
        self, frame: int | None = None, obj_id: int | None = None, wait: bool = True
    ) -> None:
        """Send the pixels of a label on a frame as that object's mask prompt.

        The mask replaces the object's clicks and box on that frame.
        """
        self._need_layers()
        frame = self.current_frame() if frame is None else int(frame)
        obj = self.prompts.object_for(obj_id)
        mask = np.asarray(self.labels.data[frame_index(self.axis, frame)]) == obj
        if not mask.any():
            raise InputError(f"mask: label {obj} has no pixels on frame {frame}; paint it first")
        self.prompts.delete(lambda key: key == (frame, obj))
        self.controller.set_mask_prompt(frame, obj, mask)
        self.prompts.sync()
        self._maybe_wait(wait)

    def clear_frame_prompts(self, frame: int | None = None, obj_id: int | None = None) -> None:
        """Delete one object's clicks, box and mask prompt on a frame."""
        self._need_layers()
        frame = self.current_frame() if frame is None else int(frame)
        obj = self.prompts.object_for(obj_id)
        self.prompts.delete(lambda key: key == (frame, obj))
        self.prompts.sync()

    def propagate(
        self,
        direction: str | None = None,
        first: int | None = None,
        last: int | None = None,
        wait: bool = True,
    ) -> None:
        """Track every object from the prompted frames over [first, last] (default: all)."""
        self._need_layers()
        direction = direction or self.propagate_panel.direction.currentText()
        self.propagation.run(direction, first, last)
        self._maybe_wait(wait)

    def segment_all(self, frame: int | None = None, config=None, wait: bool = True):
        """Every new cell the mask generator finds on ``frame`` (default: current) as an object.

        Each cell at most ``config.new_overlap`` labelled already becomes an
        object with an id above every label in the layer, with its unlabelled
        pixels as mask prompt; painted labels are never overwritten.
        ``config``: a :class:`~napari_sam2.tracking.decisions.TrackConfig`
        (its ``generator`` settings and new-cell rule). Returns the new ids
        when ``wait``, else None.
        """
        self._need_layers()
        frame = self.current_frame() if frame is None else frame
        self._check_inside("segment_all", frame, [])
        self.automatic.segment_all(int(frame), config)
        self._maybe_wait(wait)
        return list(self.automatic.new_ids) if wait else None

    def track_all_cells(self, start: int | None = None, config=None, wait: bool = True):
        """Find, track and link every cell from ``start`` (default: current frame) to the end.

        Runs on its own session (objects are untouched); frames are written as
        they are final, with ids above every label in the layer and into
        background pixels only; the run is one undo step; :meth:`cancel`
        stops it. A complete run adds a Tracks layer with the division graph.
        ``config``: a :class:`~napari_sam2.tracking.decisions.TrackConfig`.
        Returns the :class:`~napari_sam2.tracking.tracker.TrackingResult`
        (ids from 1; written as ``widget.automatic.offset`` + id) when
        ``wait``, else None.
        """
        self._need_layers()
        start = self.current_frame() if start is None else start
        self._check_inside("track_all_cells", start, [])
        self.automatic.track_all_cells(int(start), config)
        self._maybe_wait(wait)
        return self.automatic.result if wait else None

    def cancel(self) -> None:
        """Stop propagation or "Track all cells" after the frame being computed; frames written stay."""
        self.propagation.cancel()

    def go_to(self, frame: int, obj_id: int | None = None) -> None:
        """Show ``frame`` in the viewer and, if given, make ``obj_id`` the current object."""
        self._need_layers()
        n = self.layers.num_frames()
        if not isinstance(frame, (int, np.integer)) or not 0 <= frame < n:
            raise InputError(f"frame: {frame!r} is not in 0..{n - 1}")
        labels = self.labels
        point = list(labels.world_to_data(self.viewer.dims.point))
        point[self.axis] = float(frame)
        world = labels.data_to_world(point)
        offset = self.viewer.dims.ndim - labels.ndim
        self.viewer.dims.set_point(offset + self.axis, float(world[self.axis]))
        if obj_id is not None:
            self.select_object(int(obj_id))

    def effort_stats(self):
        """The session's annotation effort (:class:`~napari_sam2.review.effort.EffortStats`)."""
        return self.effort.stats()

    def finetune(
        self,
        sessions=(),
        include_current: bool = True,
        steps: int | None = None,
        freeze_image_encoder: bool | None = None,
        clip_length: int = 8,
        wait: bool = True,
    ) -> Path | None:
        """Fine-tune the loaded model on this session and saved ``sessions`` folders.

        Runs in a worker thread (napari stays live; ``widget.finetuner.cancel()``
        stops it). With ``wait``, returns the new checkpoint (in the model
        picker), or None if the run was cancelled. ``freeze_image_encoder``
        None: frozen on a CPU; ``clip_length``: frames per training clip;
        ``steps`` None: :class:`~napari_sam2.training.finetune.FinetuneSettings`' default.
        """
        from ..training.finetune import FinetuneSettings

        settings = FinetuneSettings(
            steps=FinetuneSettings().steps if steps is None else steps,
            freeze_image_encoder=freeze_image_encoder,
            clip_length=clip_length,
        )
        before = self.finetuner.last_checkpoint
        self.finetuner.start(sessions, include_current, settings, wait=wait)
        if not wait or self.finetuner.last_checkpoint == before:
            return None
        return self.finetuner.last_checkpoint

    def wait(self, timeout: float | None = None) -> bool:
        """Wait (keeping napari live) until every queued job is done."""
        return self.jobs.wait(None, timeout)

    def save_session(self, folder: str | os.PathLike | None = None, overwrite: bool = False,
                     wait: bool = True) -> Path:  # fmt: skip
        """Save prompts (CSV), labels (TIFF) and session.json into ``folder``.

        The folder must be new, empty or a napari-sam2 session
        (:mod:`napari_sam2.files.output_rules`); another session's folder is refused
        unless ``overwrite``.
        """
        self._need_layers()
        target = (
            Path(folder).expanduser() if folder is not None else self.sessions.autosave_folder()
        )
        check_session_folder(target, self.sessions.inputs())
        other = session_id_of(target)
        if other is not None and other != self.controller.session_id and not overwrite:
            raise InputError(
                f"session: {target} holds another session; choose another folder or overwrite it"
            )
        self.sessions.write(target)
        self._maybe_wait(wait)
        return target

    def load_session(self, folder: str | os.PathLike, wait: bool = True) -> None:
        """Restore a saved session: image, objects, prompt layers, labels and model.

        All or nothing: every file and field is read and checked first
        (:func:`napari_sam2.files.saved_session.read_session`); on any problem
        one InputError is raised and the viewer, the layers and the widget are
        left exactly as they were.
        """
        from ..files.saved_session import labels_shape_for, read_session

        saved = read_session(folder)
        image, opened = self.sessions.session_image(saved)
        shape = tuple(spatial_shape(image))
        if len(shape) != 3 or labels_shape_for(shape, saved.stack_axis) != saved.labels.shape:
            for layer in opened:  # layers opened for the check go again
                self.viewer.layers.remove(layer)
            raise InputError(
                f"session: labels.tif is {saved.labels.shape} (frames first) but the image "
                f"{image.name!r} is {shape} with stack axis {saved.stack_axis}"
            )
        self.jobs.cancel()
        self.jobs.wait(None)
        self._restore(saved, image)
        self._maybe_wait(wait)

    def current_frame(self) -> int:
        """The frame (index along the stack axis) shown in the viewer."""
        self._need_layers()
        pos = self.labels.world_to_data(self.viewer.dims.point)
        return int(np.clip(round(float(pos[self.axis])), 0, self.layers.num_frames() - 1))

    def shutdown(self, wait: bool = True) -> None:
        """Stop work, stop listening to the viewer and release the session.

        Called when the widget closes or leaves its dock; it does nothing
        afterwards. A job already running finishes first (a worker cannot be
        interrupted mid-frame); the session is closed after it.
        """
        if self._closed:
            return
        self._closed = True
        layers = self.viewer.layers.events
        for emitter, handler in (
            (layers.inserted, self._refresh_images),
            (layers.removed, self._layer_removed),
            (layers.renamed, self._refresh_images),
        ):
            emitter.disconnect(handler)
        self.writer.close_step()
        self.prompts.detach()
        self.review.detach()
        self.finetuner.cancel()
        self._close_session_when_idle()
        if wait:
            self.jobs.wait(None, timeout=60)

    def event(self, event) -> bool:
        """Shut down when napari takes the widget out of its dock (the dock's x button)."""
        if event.type() == QEvent.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif self._docked:
                self.shutdown(wait=False)
        return super().event(event)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.shutdown()
        super().closeEvent(event)

    # ===================================================================== layout

    def _build_layout(self) -> None:
        from superqt import QCollapsible

        inner = QWidget()
        col = QVBoxLayout(inner)
        # Set-once sections fold away, so that the dock fits a 1366 x 768 screen;
        # Model and Image fold by themselves once a model runs on an image.
        self._sections = {}
        self._folded_boxes: list[QWidget] = []
        for key, panel in (
            ("model", self.model_panel),
            ("image", self.data_panel),
            ("prompts", self.prompt_panel),
        ):
            section = QCollapsible(panel.title())
            section.layout().setContentsMargins(0, 0, 0, 0)
            section.layout().setSpacing(0)
            panel.setTitle("")
            section.addWidget(panel)
            section.expand(animate=False)
            # A folded panel is hidden too, so the dock's minimum height shrinks.
            section.toggleButton().toggled.connect(panel.setVisible)
            section.toggleButton().toggled.connect(section.updateGeometry)
            section.toggleButton().toggled.connect(self._fit_width)
            self._sections[key] = section
            col.addWidget(section)
        for panel in (self.objects_panel, self.propagate_panel, self.session_panel):
            col.addWidget(panel)
        panel = self.automatic_panel
        title = panel.title()
        panel.setTitle("")
        col.addWidget(self._folded_section("automatic", title, [panel]))
        panels = [self.review_panel, self.effort_panel, self.finetune_panel]
        col.addWidget(self._folded_section("review", "Review and improve", panels))
        col.setSpacing(2)
        col.setContentsMargins(4, 2, 4, 2)
        col.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        # Panels shrink to the dock's width; only vertical scrolling.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidget(inner)
        scroll.setFrameShape(QScrollArea.NoFrame)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        # The dock must be as wide as the panels need, plus the vertical scroll
        # bar, or their right edge would be cut off.
        self._scroll_bar = scroll.verticalScrollBar()
        margins = col.contentsMargins().left() + col.contentsMargins().right()
        self._margins = margins
        self._inner = inner
        self._fit_width()

    def _folded_section(self, key: str, title: str, panels) -> QWidget:
        """``panels`` in one section that starts folded (the dock fits 1366 x 768)."""
        from superqt import QCollapsible

        box = QWidget()
        self._folded_boxes.append(box)
        inner = QVBoxLayout(box)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.setSpacing(2)
        for panel in panels:
            inner.addWidget(panel)
        section = QCollapsible(title)
        section.layout().setContentsMargins(0, 0, 0, 0)
        section.addWidget(box)
        section.collapse(animate=False)
        box.setVisible(False)  # hidden too, so the dock's minimum height shrinks
        section.toggleButton().toggled.connect(box.setVisible)
        section.toggleButton().toggled.connect(section.updateGeometry)
        section.toggleButton().toggled.connect(self._fit_width)
        self._sections[key] = section
        return section

    def _fit_width(self, *_) -> None:
        """Grow the dock to its widest content, folded sections included.

        Called when a section opens or a model loads: panels that grow later would
        otherwise be cut off on the right (there is no horizontal scroll bar).
        """
        folded = [b.minimumSizeHint().width() + self._margins for b in self._folded_boxes]
        widest = max([self._inner.minimumSizeHint().width(), *folded])
        need = max(320, widest + self._scroll_bar.sizeHint().width() + 4)
        if need > self.minimumWidth():
            self.setMinimumWidth(need)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt API)
        hint = self._inner.sizeHint()
        return QSize(max(self.minimumWidth(), hint.width() + 20), hint.height())

    def _connect(self) -> None:
        mp, dp, pp, op = self.model_panel, self.data_panel, self.prompt_panel, self.objects_panel
        mp.load_clicked.connect(self._load_clicked)
        mp.device.currentTextChanged.connect(self._device_changed)
        dp.image.currentTextChanged.connect(self._image_chosen)
        # Choosing the same image again re-creates prompt layers that were deleted.
        dp.image.activated.connect(lambda i: self._image_chosen(dp.image.itemText(i)))
        dp.axis.currentIndexChanged.connect(self._axis_chosen)
        dp.kind.currentTextChanged.connect(self._kind_chosen)
        pp.use_mask.clicked.connect(lambda: self._guard(self.use_painted_mask, wait=False))
        pp.clear_frame.clicked.connect(lambda: self._guard(self.clear_frame_prompts))
        op.add_clicked.connect(lambda: self._guard(self.add_object))
        op.remove_clicked.connect(lambda obj: self._guard(self.remove_object, obj, wait=False))
        op.renamed.connect(self.prompts.renamed)
        op.selected.connect(lambda obj: self._guard(self.select_object, obj))
        self.propagate_panel.run.clicked.connect(lambda: self._guard(self.propagate, wait=False))
        self.propagate_panel.cancel.clicked.connect(self.cancel)
        ap = self.automatic_panel
        ap.segment_all.clicked.connect(lambda: self._guard(self.segment_all, wait=False))
        ap.track_all.clicked.connect(lambda: self._guard(self.track_all_cells, wait=False))
        self.session_panel.save.clicked.connect(self._save_clicked)
        self.session_panel.load.clicked.connect(self._load_session_clicked)
        self._download.connect(self._download_progress)
        self.jobs.busy_changed.connect(self._busy_changed)
        layers = self.viewer.layers.events
        layers.inserted.connect(self._refresh_images)
        layers.removed.connect(self._layer_removed)
        layers.renamed.connect(self._refresh_images)

    # ===================================================================== model

    def _load_clicked(self) -> None:
        mp = self.model_panel
        source = mp.source()
        if not source:
            self._error(InputError("checkpoint: choose a .pt file first"), mp.status)
            return
        self._guard(
            self.load_model,
            source,
            device=mp.device.currentText(),
            precision=mp.precision.currentText(),
            image_size=int(mp.image_size.currentText()),
            wait=False,
        )

    def _device_changed(self, device: str) -> None:
        import torch

        from ..engine.precision import bf16_possible

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model_panel.set_bf16_allowed(bf16_possible(device))

    def _busy_model(self, text: str) -> None:
        self.model_panel.status.setText(text)
        self.model_panel.progress.setRange(0, 0)
        self.model_panel.progress.setVisible(True)

    def _download_cb(self, done: int, total: int | None) -> None:
        """Called from the worker thread: hand the numbers to the UI thread via a signal."""
        self._download.emit(int(done), -1 if total is None else int(total))

    def _download_progress(self, done: int, total: int) -> None:
        bar = self.model_panel.progress
        bar.setVisible(True)
        mib = done / 2**20
        if total > 0:
            bar.setRange(0, 1000)
            bar.setValue(int(1000 * done / total))
            self.model_panel.status.setText(f"Downloading: {mib:.0f} of {total / 2**20:.0f} MiB")
        else:
            bar.setRange(0, 0)
            self.model_panel.status.setText(f"Downloading: {mib:.0f} MiB")

    def _model_loaded(self, model, source: str, device: str, precision: str) -> None:
        from ..engine.precision import bf16_possible

        if precision == "bfloat16" and not bf16_possible(model.device.type):
            precision = "float32"
        # Queued prompt work belongs to the old session; all prompts are applied
        # to the new one when it opens.
        self.jobs.cancel(("preview", "remove", *PROPAGATION_KINDS))
        self.controller.set_model(model, source, device, precision)
        self.last_error = None  # an earlier failure (a download...) is over
        self.model_panel.show_loaded(source, device, precision, model.cfg.image_size)
        name = model.cfg.name
        self._sections["model"].setText(f"Model: {name} on {model.device.type}")
        self._fold_setup()
        self.model_panel.status.setText(
            f"{name} on {model.device.type}, {precision}, {model.cfg.image_size} px input"
        )
        self._fit_width()
        self._open_session()

    def _fold_setup(self) -> None:
        """Fold the Model and Image sections once a model runs on a chosen image."""
        if self.image is not None and self.points is not None:
            for key, panel in (("model", self.model_panel), ("image", self.data_panel)):
                self._sections[key].collapse(animate=False)
                panel.setVisible(False)
                self._sections[key].updateGeometry()

    # ===================================================================== plumbing

    def _coords(self, frame: int, row: float, col: float) -> list[float]:
        out = [float(row), float(col)]
        out.insert(self.axis, float(frame))
        return out

    def _check_inside(self, what: str, frame: int, corners) -> None:
        """Refuse a scripted prompt off the stack before it reaches any layer."""
        n = self.layers.num_frames()
        if not isinstance(frame, (int, np.integer)) or not 0 <= frame < n:
            raise InputError(f"{what}: frame {frame!r} is not in 0..{n - 1}")
        shape = list(spatial_shape(self.image))
        del shape[self.axis]
        h, w = shape
        for r, c in corners:
            if not (0 <= r <= h - 1 and 0 <= c <= w - 1):
                raise InputError(
                    f"{what}: ({r:g}, {c:g}) lies outside the frame of {h} x {w} (rows x cols)"
                )

    def _maybe_wait(self, wait: bool) -> None:
        if wait:
            self.jobs.wait(None)

    def _guard(self, func, *args, **kwargs):
        """Run a UI action; a Sam2Error becomes a notification, not a traceback."""
        try:
            return func(*args, **kwargs)
        except Sam2Error as exc:
            self._error(exc)
            return None

    def _error(self, exc: BaseException, label=None) -> None:
        from napari.utils.notifications import show_error

        message = one_line(exc)
        self.last_error = message
        if label is not None:
            label.setText(message)
        show_error(message)

    def _busy_changed(self, busy: bool) -> None:
        self.propagate_panel.cancel.setEnabled(self.propagation.running())

    def _need_layers(self) -> None:
        if self.image is None:
            raise InputError("image: pick a 3D image layer in the SAM 2 widget first")
        if not self.layers.attached:
            raise InputError(
                "layers: a SAM2 prompt or labels layer was deleted; pick the image again"
            )

    def _written(self, frames: int) -> None:
        """A propagation wrote frames: autosave when asked to."""
        if self.session_panel.autosave.isChecked():
            try:
                self.sessions.autosave()
            except (Sam2Error, OSError) as exc:
                self._error(exc)

    # ===================================================================== image and session

    def _refresh_images(self, event=None) -> None:
        from napari.layers import Image

        combo = self.data_panel.image
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        current = combo.currentText()
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(names)
        keep = current if current in names else (names[0] if names else "")
        combo.setCurrentText(keep)
        combo.blockSignals(False)
        if keep and (self.image is None or self.image.name != keep):
            self._image_chosen(keep)

    def _layer_removed(self, event) -> None:
        layer = event.value
        if layer is self.image:
            self.prompts.detach()
            self.layers.image = None
            self._close_session_when_idle()
        elif layer in (self.points, self.boxes, self.labels):
            self.jobs.cancel()
            self.writer.close_step()
            self.prompts.detach()
            self.layers.forget_prompt_layers()
        self._refresh_images()

    def _image_chosen(self, name: str) -> None:
        if not name or name not in self.viewer.layers:
            return
        layer = self.viewer.layers[name]
        if layer is self.image and self.points is not None:
            return
        self.writer.close_step()
        self.prompts.detach()
        self.layers.forget_prompt_layers()
        self._close_session_when_idle()
        if layer is not self.image:
            # Another image is another session: never autosave into the old one's folder.
            self.controller.new_identity()
            self.propagation.corrections.clear()
            self.session_panel.folder.setText("Not saved yet")
        self.layers.image = layer
        ndim = len(spatial_shape(layer))
        names = [str(n) for n in (getattr(layer, "axis_labels", None) or range(ndim))]
        self.data_panel.set_axes(_axis_titles(names), 0)
        self.layers.axis = 0
        self._guess_kind(layer, names)
        if ndim != 3:
            self.last_error = f"image: {name} has {ndim} dimensions; pick a 3D stack"
            self.model_panel.status.setText(self.last_error)
            return
        self._attach()
        self._open_session()

    def _attach(self) -> None:
        self.prompts.attach()
        self.effort.attached(self.prompts.current_prompts())
        self.propagate_panel.set_frames(self.layers.num_frames())

    def _close_session_when_idle(self) -> None:
        """Drop queued work and the session; close it once the running job is done.

        A worker cannot be stopped mid-frame, and closing the session under it
        would make it fail.
        """
        self.jobs.cancel()
        session = self.controller.detach_session()
        if session is None:
            return
        if self.jobs.current is None:
            session.close()
        else:
            self.jobs.submit(Job("close", _nothing, on_finish=session.close, cleanup=True))

    def _guess_kind(self, layer, axis_names) -> None:
        hint = str(layer.metadata.get("napari_sam2_stack_axis", "")).lower()
        is_z = hint == "z" or str(axis_names[0]).lower() == "z"
        self.data_panel.kind.blockSignals(True)
        self.data_panel.kind.setCurrentText("z-stack" if is_z else "time-lapse")
        self.data_panel.kind.blockSignals(False)
        self._kind_chosen(self.data_panel.kind.currentText())

    def _axis_chosen(self, index: int) -> None:
        if index < 0 or index == self.axis or self.image is None:
            return
        self._close_session_when_idle()
        self.layers.axis = index
        self.propagate_panel.set_frames(self.layers.num_frames())
        self._open_session()

    def _kind_chosen(self, text: str) -> None:
        if self.controller.set_stack_kind(text) == "z":
            self.propagate_panel.direction.setCurrentText("both")

    def _open_session(self) -> None:
        """Open a VideoSession on the image (worker), then give it the layers' prompts.

        Normally every prompt is previewed (written to the labels). Right after a
        session was loaded (``self._restoring``) the prompts are replayed without
        writing, so the loaded labels stay exactly as saved.
        """
        if self.controller.model is None or self.image is None or self.labels is None:
            return
        data, rgb = image_frames(self.image)
        try:
            stack = Stack(data, self.axis, rgb=rgb)
        except Sam2Error as exc:
            self._error(exc)
            return
        quiet = self._restoring
        # Snapshot now: what the session replays is what the layers hold now.
        prompts = self.prompts.rows() if quiet else None
        current = self.prompts.current_prompts() if quiet else None
        ranges = dict(self.controller.frame_ranges)

        made = []

        def work():
            session = self.controller.open_session(stack)
            made.append(session)
            if prompts is not None and not prompts.is_empty:
                from ..engine.replay import apply_prompts

                apply_prompts(session, prompts)
                apply_frame_ranges(session, ranges)  # corrected "Track all" tracks
            return session

        def release() -> None:
            # A cancelled (or failed) job's session is never installed: close it.
            for session in made:
                if session is not self.controller.session:
                    session.close()

        job = Job(
            "session",
            work,
            on_done=lambda session: self._session_opened(session, stack, current),
            on_error=self._error,
            on_finish=release,
            cleanup=True,
        )
        self.jobs.submit(job)

    def _session_opened(self, session, stack, replayed) -> None:
        self.controller.set_session(session, stack)
        if replayed is None:
            self.prompts.sync()
            return
        self._restoring = False
        self.controller.session_replayed(replayed, self._saved_reached)
        self.prompts.sync()  # prompts edited while the session opened

    def _restore(self, saved, image) -> None:
        """Install a validated session (UI thread); nothing here can fail on its content."""
        self.data_panel.image.setCurrentText(image.name)
        if self.image is not image:
            self._image_chosen(image.name)
        if saved.stack_axis != self.axis:
            self.data_panel.axis.setCurrentIndex(saved.stack_axis)
        kind = "z-stack" if saved.stack_kind == "z" else "time-lapse"
        self.data_panel.kind.setCurrentText(kind)
        # Choosing the image or axis may have queued a session for the old prompts.
        self.jobs.cancel()
        self.jobs.wait(None)
        self.controller.close_session()
        self._saved_reached = self.sessions.restore_layers(saved)
        restored = self.prompts.current_prompts()
        self.effort.restored(saved.effort, restored, self.controller.session_id)
        self.review.restored(saved.review, self.controller.session_id)
        # The next session opened replays the prompts without writing labels, even
        # if the session's model cannot be loaded and the user loads another.
        self._restoring = True
        source = saved.model.source
        if source and (self.controller.model is None or self.controller.model_source != source):
            self._reload_for_session(saved.model)
        else:
            self._open_session()

    def _reload_for_session(self, model) -> None:
        """Load the session's model (a SavedModel), then open the session with its prompts."""
        source, device, precision = model.source, model.device, model.precision
        image_size = model.image_size  # None: the checkpoint's own

        def loaded(m) -> None:
            self.controller.set_model(m, source, device, precision)
            self.last_error = None
            self.model_panel.show_loaded(source, device, precision, m.cfg.image_size)
            self.model_panel.status.setText(f"{m.cfg.name} on {m.device.type}, {precision}")
            self._open_session()

        self.jobs.submit(
            Job(
                "load",
                self.controller.load_model,
                (source, device, image_size, self._download_cb),
                on_start=lambda: self._busy_model(f"Loading {Path(source).name}..."),
                on_done=loaded,
                on_error=lambda exc: self._error(exc, self.model_panel.status),
                on_finish=lambda: self.model_panel.progress.setVisible(False),
            )
        )

    def _save_clicked(self) -> None:
        if self.image is None:
            self._error(InputError("image: pick an image layer first"))
            return
        folder = self.session_panel.ask_folder("Save SAM 2 session to folder")
        if not folder:
            return
        target = Path(folder)
        try:
            check_session_folder(target, self.sessions.inputs())
        except InputError as exc:
            self._error(exc)
            return
        other = session_id_of(target)
        overwrite = False
        if other is not None and other != self.controller.session_id:
            answer = QMessageBox.question(
                self, "Overwrite session?", f"{target} holds another session. Overwrite it?"
            )
            if answer != QMessageBox.Yes:
                return
            overwrite = True
        self._guard(self.save_session, target, overwrite=overwrite, wait=False)

    def _load_session_clicked(self) -> None:
        folder = self.session_panel.ask_folder("Load SAM 2 session folder")
        if folder:
            self._guard(self.load_session, folder, wait=False)


def _nothing() -> None:
    """A job that only waits its turn in the queue."""


def _axis_titles(names: list[str]) -> list[str]:
    """ "0: t" for named axes; "axis 0" when napari only has its default names (-3, -2...)."""
    if all(n.lstrip("-").isdigit() for n in names):
        return [f"axis {i}" for i in range(len(names))]
    return [f"{i}: {n}" for i, n in enumerate(names)]


def _checkpoint_choices() -> tuple[tuple[str, ...], str, dict[str, str]]:
    """Registry names, the default one, and a tooltip per name (size, cached or not)."""
    from ..weights.registry import DEFAULT_MODEL, cache_state

    names, tips = [], {}
    for entry, path, present in cache_state():
        names.append(entry.name)
        if entry.bundled:
            tips[entry.name] = (
                f"{entry.release}: small, trained here on synthetic fluorescence; ships with "
                "napari-sam2 and works offline. For demos and tests; use SAM 2.1 or a "
                "fine-tuned model for real data"
            )
            continue
        size = f"{entry.size / 1e6:.0f} MB" if entry.size else "size unknown"
        where = f"cached at {path}" if present else "downloaded on first use"
        tips[entry.name] = f"{entry.release}, {size}, {where}"
    return tuple(names), DEFAULT_MODEL, tips


__all__ = ["Sam2Widget"]
