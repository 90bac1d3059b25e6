"""Image, prompt layers, prompt syncing and objects (a mixin of the SAM 2 widget).

Part of :class:`napari_sam2._qt.widget.Sam2Widget` (a mixin, split out to keep
files short): everything here runs on the UI thread and hands compute to the
widget's job queue.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError, Sam2Error
from ..files.stacks import Stack
from .controller import collect_prompts
from .jobs import Job
from .layers import (
    ensure_boxes,
    ensure_labels,
    ensure_points,
    image_frames,
    label_colour,
    read_boxes,
    read_points,
    spatial_shape,
    style_boxes,
    style_points,
)


class PromptsMixin:
    """Layers, prompts and objects of the SAM 2 widget."""

    # ===================================================================== image and layers

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
            self._detach()
            self.image = None
            self._close_session_when_idle()
        elif layer in (self.points, self.boxes, self.labels):
            self.jobs.cancel()
            self._close_history()
            self._detach()
            self.points = self.boxes = self.labels = None
        self._refresh_images()

    def _image_chosen(self, name: str) -> None:
        if not name or name not in self.viewer.layers:
            return
        layer = self.viewer.layers[name]
        if layer is self.image and self.points is not None:
            return
        self._close_history()
        self._detach()
        self.points = self.boxes = self.labels = None
        self._close_session_when_idle()
        if layer is not self.image:
            # Another image is another session: never autosave into the old one's folder.
            self.controller.new_identity()
            self._corrections.clear()
            self.session_panel.folder.setText("Not saved yet")
        self.image = layer
        ndim = len(spatial_shape(layer))
        names = [str(n) for n in (getattr(layer, "axis_labels", None) or range(ndim))]
        self.data_panel.set_axes(_axis_titles(names), 0)
        self.axis = 0
        self._guess_kind(layer, names)
        if ndim != 3:
            self.last_error = f"image: {name} has {ndim} dimensions; pick a 3D stack"
            self.model_panel.status.setText(self.last_error)
            return
        self._attach()
        self._open_session()

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
        self.axis = index
        self.propagate_panel.set_frames(self._num_frames())
        self._open_session()

    def _kind_chosen(self, text: str) -> None:
        if self.controller.set_stack_kind(text) == "z":
            self.propagate_panel.direction.setCurrentText("both")

    def _attach(self) -> None:
        """Create or adopt the prompt layers and listen to them."""
        v, img = self.viewer, self.image
        self._syncing = True
        try:
            self.labels = ensure_labels(v, img)
            self.boxes = ensure_boxes(v, img)
            self.points = ensure_points(v, img)
        finally:
            self._syncing = False
        self.propagate_panel.set_frames(self._num_frames())
        self.points.events.data.connect(self._points_changed)
        self.points.events.features.connect(self._prompts_changed)
        self.boxes.events.data.connect(self._boxes_changed)
        self.labels.events.selected_label.connect(self._selected_label_changed)
        self.labels.events.colormap.connect(self._restyle)
        self.points.mouse_drag_callbacks.insert(0, self._points_pressed)
        self.boxes.mouse_drag_callbacks.insert(0, self._boxes_pressed)
        self.points.bind_key("n", self._toggle_negative, overwrite=True)
        for obj in self._prompted_objects():
            self.controller.add_object(obj)
        if not self.controller.objects:
            self.controller.add_object(max(1, int(self.labels.selected_label)))
        self._selected_label_changed()
        self._refresh_objects()
        self._restyle()
        self.points.mode = "add"
        v.layers.selection.active = self.points

    def _detach(self) -> None:
        for layer, handler in (
            (self.points, self._points_changed),
            (self.boxes, self._boxes_changed),
        ):
            if layer is not None:
                layer.events.data.disconnect(handler)
        if self.points is not None:
            self.points.events.features.disconnect(self._prompts_changed)
            self._drop_callback(self.points, self._points_pressed)
            self.points.bind_key("n", None)
        if self.boxes is not None:
            self._drop_callback(self.boxes, self._boxes_pressed)
        if self.labels is not None:
            self.labels.events.selected_label.disconnect(self._selected_label_changed)
            self.labels.events.colormap.disconnect(self._restyle)
        self.controller.clear_objects()

    @staticmethod
    def _drop_callback(layer, func) -> None:
        if func in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.remove(func)

    def _need_layers(self) -> None:
        if self.image is None:
            raise InputError("image: pick a 3D image layer in the SAM 2 widget first")
        if self.labels is None or self.points is None or self.boxes is None:
            raise InputError(
                "layers: a SAM2 prompt or labels layer was deleted; pick the image again"
            )

    def _num_frames(self) -> int:
        return int(spatial_shape(self.image)[self.axis])

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
        prompts = self._prompt_rows() if quiet else None
        current = self._current_prompts() if quiet else None

        made = []

        def work():
            session = self.controller.open_session(stack)
            made.append(session)
            if prompts is not None and not prompts.is_empty:
                from ..engine.replay import apply_prompts

                apply_prompts(session, prompts)
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
            self._sync_prompts()
            return
        self._restoring = False
        self.controller.session_replayed(replayed, self._saved_reached)
        self._sync_prompts()  # prompts edited while the session opened

    # ===================================================================== prompts

    def _points_pressed(self, layer, event) -> None:
        """Before napari adds a click: choose its label (Shift/right = negative) and object."""
        if layer.mode != "add":
            return
        negative = (
            "Shift" in event.modifiers
            or "Control" in event.modifiers
            or getattr(event, "button", 1) == 2
            or self.prompt_panel.negative.isChecked()
        )
        layer.feature_defaults = {"label": 0 if negative else 1, "object": self._current_object()}

    def _boxes_pressed(self, layer, event) -> None:
        layer.feature_defaults = {"object": self._current_object()}

    def _toggle_negative(self, layer=None) -> None:
        box = self.prompt_panel.negative
        box.setChecked(not box.isChecked())

    def _points_changed(self, event) -> None:
        action = str(getattr(event, "action", ""))
        if action.endswith("ing"):  # adding / removing / changing: wait for the result
            return
        if not self._syncing:
            style_points(self.points, self._colour)
        self._prompts_changed()

    def _boxes_changed(self, event) -> None:
        action = str(getattr(event, "action", ""))
        if action.endswith("ing"):
            return
        if not self._syncing:
            style_boxes(self.boxes, self._colour)
        self._prompts_changed()

    def _prompts_changed(self, event=None) -> None:
        if not self._syncing:
            self._sync_prompts()

    def _current_prompts(self) -> dict:
        points = read_points(self.points, self.axis)
        boxes = {
            k: b for k, b in read_boxes(self.boxes, self.axis).items()
            if b[2] - b[0] >= 1 and b[3] - b[1] >= 1  # a rectangle still being drawn
        }  # fmt: skip
        # Clicks or a box replace an earlier mask prompt of the same object and frame.
        edited = set(points) | set(boxes)
        self.controller.drop_mask_prompts(lambda key: key in edited)
        return collect_prompts(points, boxes, self.controller.masks)

    def _sync_prompts(self) -> None:
        """Send every added, edited or deleted prompt to the session, one job per frame."""
        ctrl = self.controller
        if self.points is None or self.boxes is None:
            return
        current = self._current_prompts()
        known = set(ctrl.objects)
        if ctrl.session is None:
            for _, obj in current:
                ctrl.add_object(obj)  # the prompts are applied when the session opens
            if set(ctrl.objects) != known:
                self._refresh_objects()
            return
        edits = ctrl.take_edits(current, self._num_frames())
        if set(ctrl.objects) != known:
            self._refresh_objects()
        if edits.outside:
            frame = edits.outside[0][0]
            self._error(
                InputError(f"prompts: frame {frame} is outside 0..{self._num_frames() - 1}")
            )
        by_frame, corrections = edits.by_frame, edits.corrections
        if not by_frame:
            return
        auto = bool(corrections) and self.propagate_panel.auto.isChecked()
        if auto:
            # A running re-propagation is outdated now: stop it and redo all the
            # corrections not yet propagated in one run, after the previews.
            self.jobs.cancel(("repropagate",))
            self._corrections += corrections
        for frame, items in sorted(by_frame.items()):
            self.jobs.submit(
                Job(
                    "preview",
                    ctrl.apply_prompts,
                    (frame, items),
                    on_done=self._preview_done,
                    on_error=lambda exc, ks=[(frame, i[0]) for i in items]: self._preview_failed(
                        exc, ks
                    ),
                )
            )
        if auto:
            self._repropagate(self._corrections)

    def _preview_done(self, outcome) -> None:
        result, gone = outcome
        self.controller.objects_left(gone)
        if result is not None:
            self._write(result, result.predicted_ids() | set(gone))

    def _preview_failed(self, exc, keys) -> None:
        self.controller.forget_applied(keys)  # the session may hold part of it
        self._error(exc)

    def _delete_prompts(self, match) -> None:
        """Remove clicks, boxes and mask prompts whose (frame, object) matches."""
        self._syncing = True
        try:
            pts = read_points(self.points, self.axis)
            if pts:
                frames = np.rint(np.asarray(self.points.data)[:, self.axis]).astype(int)
                objs = self.points.features["object"].to_numpy().astype(int)
                drop = [
                    i for i, (f, o) in enumerate(zip(frames, objs, strict=True)) if match((f, o))
                ]
                if drop:
                    self.points.selected_data = set()
                    self.points.remove(drop)
            if len(self.boxes.data):
                drop = []
                objs = self.boxes.features["object"].to_numpy().astype(int)
                for i, verts in enumerate(self.boxes.data):
                    f = int(np.rint(np.asarray(verts)[:, self.axis].mean()))
                    if match((f, int(objs[i]))):
                        drop.append(i)
                if drop:
                    self.boxes.selected_data = set(drop)
                    self.boxes.remove_selected()
            self.controller.drop_mask_prompts(match)
        finally:
            self._syncing = False
        style_points(self.points, self._colour)
        style_boxes(self.boxes, self._colour)

    # ===================================================================== objects

    def _current_object(self) -> int:
        return max(1, int(self.labels.selected_label)) if self.labels is not None else 1

    def _object_for(self, obj_id: int | None) -> int:
        obj = self._current_object() if obj_id is None else int(obj_id)
        if obj < 1:
            raise InputError(f"obj_id: object ids start at 1, got {obj}")
        if obj not in self.controller.objects:
            self.controller.add_object(obj)
            self._refresh_objects()
        return obj

    def _prompted_objects(self) -> set[int]:
        keys = set(read_points(self.points, self.axis)) | set(read_boxes(self.boxes, self.axis))
        return {obj for _, obj in keys}

    def _colour(self, obj: int) -> np.ndarray:
        return label_colour(self.labels, obj)

    def _restyle(self, event=None) -> None:
        if self.points is not None:
            style_points(self.points, self._colour)
            style_boxes(self.boxes, self._colour)
            self._refresh_objects()

    def _refresh_objects(self) -> None:
        if self.labels is None:
            return
        objs = self.controller.objects
        colours = {o: tuple(self._colour(o)) for o in objs}
        self.objects_panel.set_objects(objs, colours, self._current_object())

    def _selected_label_changed(self, event=None) -> None:
        obj = self._current_object()
        self.points.feature_defaults = {"label": 1, "object": obj}
        self.boxes.feature_defaults = {"object": obj}
        self.boxes.current_edge_color = self._colour(obj)
        self.objects_panel.select(obj)

    def _renamed(self, obj: int, name: str) -> None:
        self.controller.rename_object(obj, name)

    def _object_removed(self, obj: int, results) -> None:
        if self.labels is None:
            return
        with self.labels.block_history():  # one undo step for the whole removal
            for result in results:
                self._write(result, result.predicted_ids() | {obj})
            where = np.nonzero(np.asarray(self.labels.data) == obj)
            if where[0].size:
                self.labels.data_setitem(where, 0)


def _nothing() -> None:
    """A job that only waits its turn in the queue."""


def _axis_titles(names: list[str]) -> list[str]:
    """ "0: t" for named axes; "axis 0" when napari only has its default names (-3, -2...)."""
    if all(n.lstrip("-").isdigit() for n in names):
        return [f"axis {i}" for i in range(len(names))]
    return [f"{i}: {n}" for i, n in enumerate(names)]
