"""Prompt layers <-> session, and the objects (one part of the SAM 2 widget).

:class:`PromptSync` listens to the points and boxes layers, reads their prompts
per (frame, object), lets the controller decide what changed and which edits
correct tracked frames (:meth:`~napari_sam2._qt.controller.Sam2Controller.take_edits`),
and queues the previews and re-propagations. Everything here runs on the UI
thread; compute goes to the job queue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from ..errors import InputError
from .controller import Sam2Controller, collect_prompts
from .jobs import Job, JobQueue
from .label_writer import LabelWriter
from .layers import (
    LayerSet,
    ensure_boxes,
    ensure_labels,
    ensure_points,
    label_colour,
    read_boxes,
    read_points,
    spatial_shape,
    style_boxes,
    style_points,
)
from .propagation import Propagation


class PromptSync:
    """Keeps the session's prompts equal to the prompt layers'; owns the Objects panel."""

    def __init__(
        self,
        viewer,
        controller: Sam2Controller,
        jobs: JobQueue,
        layers: LayerSet,
        writer: LabelWriter,
        propagation: Propagation,
        prompt_panel,
        objects_panel,
        auto_repropagate: Callable[[], bool],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._viewer = viewer
        self._controller = controller
        self._jobs = jobs
        self._layers = layers
        self._writer = writer
        self._propagation = propagation
        self._prompt_panel = prompt_panel
        self._objects_panel = objects_panel
        self._auto = auto_repropagate
        self._on_error = on_error
        self._quiet = False  # True while the widget edits the prompt layers itself
        # Called with the prompts per (frame, object) each time they are synced
        # (the effort statistics and the review queue follow the edits).
        self.listeners: list[Callable[[dict], None]] = []

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """Edit the prompt layers without syncing each change to the session."""
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    # ===================================================================== layers

    def attach(self) -> None:
        """Create or adopt the prompt layers of ``layers.image`` and listen to them."""
        v, img, lay = self._viewer, self._layers.image, self._layers
        with self.quiet():
            lay.labels = ensure_labels(v, img)
            lay.boxes = ensure_boxes(v, img)
            lay.points = ensure_points(v, img)
        lay.points.events.data.connect(self._points_changed)
        lay.points.events.features.connect(self._prompts_changed)
        lay.boxes.events.data.connect(self._boxes_changed)
        lay.labels.events.selected_label.connect(self.selected_label_changed)
        lay.labels.events.colormap.connect(self.restyle)
        lay.points.mouse_drag_callbacks.insert(0, self.points_pressed)
        lay.boxes.mouse_drag_callbacks.insert(0, self.boxes_pressed)
        lay.points.bind_key("n", self.toggle_negative, overwrite=True)
        for obj in self._prompted_objects():
            self._controller.add_object(obj)
        if not self._controller.objects:
            self._controller.add_object(max(1, int(lay.labels.selected_label)))
        self.selected_label_changed()
        self.refresh_objects()
        self.restyle()
        lay.points.mode = "add"
        v.layers.selection.active = lay.points

    def detach(self) -> None:
        """Stop listening to the prompt layers; forget objects and mask prompts."""
        lay = self._layers
        for layer, handler in (
            (lay.points, self._points_changed),
            (lay.boxes, self._boxes_changed),
        ):
            if layer is not None:
                layer.events.data.disconnect(handler)
        if lay.points is not None:
            lay.points.events.features.disconnect(self._prompts_changed)
            _drop_callback(lay.points, self.points_pressed)
            lay.points.bind_key("n", None)
        if lay.boxes is not None:
            _drop_callback(lay.boxes, self.boxes_pressed)
        if lay.labels is not None:
            lay.labels.events.selected_label.disconnect(self.selected_label_changed)
            lay.labels.events.colormap.disconnect(self.restyle)
        self._controller.clear_objects()

    # ===================================================================== mouse and keys

    def points_pressed(self, layer, event) -> None:
        """Before napari adds a click: choose its label (Shift/right = negative) and object."""
        if layer.mode != "add":
            return
        negative = (
            "Shift" in event.modifiers
            or "Control" in event.modifiers
            or getattr(event, "button", 1) == 2
            or self._prompt_panel.negative.isChecked()
        )
        layer.feature_defaults = {"label": 0 if negative else 1, "object": self.current_object()}

    def boxes_pressed(self, layer, event) -> None:
        layer.feature_defaults = {"object": self.current_object()}

    def toggle_negative(self, layer=None) -> None:
        box = self._prompt_panel.negative
        box.setChecked(not box.isChecked())

    def _points_changed(self, event) -> None:
        action = str(getattr(event, "action", ""))
        if action.endswith("ing"):  # adding / removing / changing: wait for the result
            return
        if not self._quiet:
            style_points(self._layers.points, self.colour)
        self._prompts_changed()

    def _boxes_changed(self, event) -> None:
        action = str(getattr(event, "action", ""))
        if action.endswith("ing"):
            return
        if not self._quiet:
            style_boxes(self._layers.boxes, self.colour)
        self._prompts_changed()

    def _prompts_changed(self, event=None) -> None:
        if not self._quiet:
            self.sync()

    # ===================================================================== prompts

    def current_prompts(self) -> dict:
        """The layers' prompts (and the controller's mask prompts) per (frame, object)."""
        lay = self._layers
        points = read_points(lay.points, lay.axis)
        boxes = {
            k: b for k, b in read_boxes(lay.boxes, lay.axis).items()
            if b[2] - b[0] >= 1 and b[3] - b[1] >= 1  # a rectangle still being drawn
        }  # fmt: skip
        # Clicks or a box replace an earlier mask prompt of the same object and frame.
        edited = set(points) | set(boxes)
        self._controller.drop_mask_prompts(lambda key: key in edited)
        return collect_prompts(points, boxes, self._controller.masks)

    def sync(self) -> None:
        """Send every added, edited or deleted prompt to the session, one job per frame."""
        ctrl, lay = self._controller, self._layers
        if lay.points is None or lay.boxes is None:
            return
        current = self.current_prompts()
        labels = None if lay.labels is None else lay.labels.data
        handed = ctrl.hand_over_tracks(current, labels, lay.axis)  # "Track all" tracks
        if handed:
            current = self.current_prompts()  # now with their first frames' mask prompts
        for listener in self.listeners:
            listener(current)
        known = None if handed else set(ctrl.objects)  # a track named "track <id>": refresh
        if ctrl.session is None:
            for _, obj in current:
                ctrl.add_object(obj)  # the prompts are applied when the session opens
            if set(ctrl.objects) != known:
                self.refresh_objects()
            return
        edits = ctrl.take_edits(current, lay.num_frames())
        if set(ctrl.objects) != known:
            self.refresh_objects()
        if edits.outside:
            frame = edits.outside[0][0]
            self._on_error(
                InputError(f"prompts: frame {frame} is outside 0..{lay.num_frames() - 1}")
            )
        if not edits.by_frame:
            return
        auto = bool(edits.corrections) and self._auto()
        if auto:
            # Redo all the corrections not yet propagated in one run, after the previews.
            self._propagation.add_corrections(edits.corrections)
        for frame, items in sorted(edits.by_frame.items()):
            keys = [(frame, item[0]) for item in items]
            self._jobs.submit(
                Job(
                    "preview",
                    ctrl.apply_prompts,
                    (frame, items),
                    on_done=self._preview_done,
                    on_error=lambda exc, keys=keys: self._preview_failed(exc, keys),
                )
            )
        if auto:
            self._propagation.repropagate()

    def _preview_done(self, outcome) -> None:
        result, gone = outcome
        self._controller.objects_left(gone)
        if result is not None:
            self._writer.write(result, result.predicted_ids() | set(gone))

    def _preview_failed(self, exc, keys) -> None:
        self._controller.forget_applied(keys)  # the session may hold part of it
        self._on_error(exc)

    def delete(self, match) -> None:
        """Remove clicks, boxes and mask prompts whose (frame, object) ``match`` accepts."""
        lay = self._layers
        with self.quiet():
            if read_points(lay.points, lay.axis):
                frames = np.rint(np.asarray(lay.points.data)[:, lay.axis]).astype(int)
                objs = lay.points.features["object"].to_numpy().astype(int)
                drop = [
                    i for i, (f, o) in enumerate(zip(frames, objs, strict=True)) if match((f, o))
                ]
                if drop:
                    lay.points.selected_data = set()
                    lay.points.remove(drop)
            if len(lay.boxes.data):
                drop = []
                objs = lay.boxes.features["object"].to_numpy().astype(int)
                for i, verts in enumerate(lay.boxes.data):
                    f = int(np.rint(np.asarray(verts)[:, lay.axis].mean()))
                    if match((f, int(objs[i]))):
                        drop.append(i)
                if drop:
                    lay.boxes.selected_data = set(drop)
                    lay.boxes.remove_selected()
            self._controller.drop_mask_prompts(match)
        style_points(lay.points, self.colour)
        style_boxes(lay.boxes, self.colour)

    def rows(self):
        """The layers' prompts as prompt-file records (points in click order)."""
        from ..files.prompt_files import BoxRow, PointRow, Prompts

        lay = self._layers
        rows = []
        if len(lay.points.data):
            data = np.asarray(lay.points.data)
            feats = lay.points.features
            for coords, lab, obj in zip(
                data, feats["label"].to_numpy(), feats["object"].to_numpy(), strict=True
            ):
                plane = np.delete(coords, lay.axis)
                frame = int(np.rint(coords[lay.axis]))
                rows.append(PointRow(frame, float(plane[0]), float(plane[1]), int(lab), int(obj)))
        boxes = [BoxRow(f, *box, o) for (f, o), box in read_boxes(lay.boxes, lay.axis).items()]
        masks = None
        if self._controller.masks:
            masks = np.zeros(spatial_shape(lay.image), np.int32)
            masks = np.moveaxis(masks, lay.axis, 0)
            for (f, o), m in self._controller.masks.items():
                masks[f][m] = o
        return Prompts(tuple(rows), tuple(boxes), masks)

    # ===================================================================== objects

    def current_object(self) -> int:
        labels = self._layers.labels
        return max(1, int(labels.selected_label)) if labels is not None else 1

    def object_for(self, obj_id: int | None) -> int:
        """``obj_id`` (default: the current object), registered as an object."""
        obj = self.current_object() if obj_id is None else int(obj_id)
        if obj < 1:
            raise InputError(f"obj_id: object ids start at 1, got {obj}")
        if obj not in self._controller.objects:
            self._controller.add_object(obj)
            self.refresh_objects()
        return obj

    def _prompted_objects(self) -> set[int]:
        lay = self._layers
        keys = set(read_points(lay.points, lay.axis)) | set(read_boxes(lay.boxes, lay.axis))
        return {obj for _, obj in keys}

    def colour(self, obj: int) -> np.ndarray:
        return label_colour(self._layers.labels, obj)

    def restyle(self, event=None) -> None:
        if self._layers.points is not None:
            style_points(self._layers.points, self.colour)
            style_boxes(self._layers.boxes, self.colour)
            self.refresh_objects()

    def refresh_objects(self) -> None:
        if self._layers.labels is None:
            return
        objs = self._controller.objects
        colours = {o: tuple(self.colour(o)) for o in objs}
        self._objects_panel.set_objects(objs, colours, self.current_object())

    def selected_label_changed(self, event=None) -> None:
        lay, obj = self._layers, self.current_object()
        lay.points.feature_defaults = {"label": 1, "object": obj}
        lay.boxes.feature_defaults = {"object": obj}
        lay.boxes.current_edge_color = self.colour(obj)
        self._objects_panel.select(obj)

    def renamed(self, obj: int, name: str) -> None:
        self._controller.rename_object(obj, name)


def _drop_callback(layer, func) -> None:
    if func in layer.mouse_drag_callbacks:
        layer.mouse_drag_callbacks.remove(func)
