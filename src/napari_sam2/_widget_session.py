"""Saving, autosaving and loading widget sessions (a mixin of the SAM 2 widget).

A session folder holds ``points.csv``, ``boxes.csv`` and ``mask_prompts.tif``
(:mod:`napari_sam2.prompt_io`), ``labels.tif`` and ``session.json``. Files are
written in a worker from a snapshot taken on the UI thread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QMessageBox

from ._controller import (
    LABELS_FILE,
    default_session_folder,
    free_folder,
    one_line,
    session_id_of,
    write_session_json,
)
from ._widget_jobs import Job
from ._widget_layers import add_box_rows, add_point_rows, read_boxes, spatial_shape
from .errors import InputError
from .output_rules import check_session_folder


class SessionMixin:
    """Session save / load / autosave of the SAM 2 widget."""

    # ===================================================================== sessions

    def _autosave_folder(self) -> Path:
        """The current session folder; else a default one that holds no other session."""
        ctrl = self.controller
        if ctrl.session_folder is not None:
            return ctrl.session_folder
        path = getattr(getattr(self.image, "source", None), "path", None)
        return free_folder(default_session_folder(path, self.image.name), ctrl.session_id)

    def _session_inputs(self) -> list:
        """Files a session folder must never replace or sit inside (the image's source)."""
        return [getattr(getattr(self.image, "source", None), "path", None)]

    def _autosave(self) -> None:
        target = self._autosave_folder()
        check_session_folder(target, self._session_inputs(), "autosave folder")
        first = self.controller.session_folder is None
        self._write_session(target, wait=False)
        if first:
            from napari.utils.notifications import show_info

            show_info(f"napari-sam2: autosaving the session to {target}")

    def _write_session(self, folder: Path, wait: bool) -> None:
        """Snapshot on the UI thread, write the files in a worker."""
        from .prompt_io import write_label_tiff, write_prompts

        prompts = self._prompt_rows()
        # On disk the stack axis comes first: (T, H, W), like the CLI's label files.
        labels = np.moveaxis(np.array(self.labels.data, dtype=np.int32, copy=True), self.axis, 0)
        meta = self.controller.session_meta(
            image={
                "layer": self.image.name,
                "path": getattr(getattr(self.image, "source", None), "path", None),
                "shape": list(spatial_shape(self.image)),
            },
            layers={
                "points": self.points.name,
                "boxes": self.boxes.name,
                "labels": self.labels.name,
            },
            stack_axis=self.axis,
            extra={
                "reached": {
                    str(o): sorted([f, int(r)] for f, r in fr.items())
                    for o, fr in self.controller.reached.items()
                },
                "selected_label": self._current_object(),
            },
        )

        def work():
            folder.mkdir(parents=True, exist_ok=True)
            write_prompts(folder, prompts)
            write_label_tiff(folder / LABELS_FILE, labels)
            write_session_json(folder, meta)
            return folder

        def done(path) -> None:
            self.controller.session_folder = Path(path)
            self.session_panel.show_folder(path)

        self.jobs.submit(Job("save", work, on_done=done, on_error=self._error))
        self._maybe_wait(wait)

    def _prompt_rows(self):
        """The layers' prompts as prompt_io records (points in click order)."""
        from .prompt_io import BoxRow, PointRow, Prompts

        rows = []
        if len(self.points.data):
            data = np.asarray(self.points.data)
            feats = self.points.features
            for coords, lab, obj in zip(
                data, feats["label"].to_numpy(), feats["object"].to_numpy(), strict=True
            ):
                plane = np.delete(coords, self.axis)
                frame = int(np.rint(coords[self.axis]))
                rows.append(PointRow(frame, float(plane[0]), float(plane[1]), int(lab), int(obj)))
        boxes = [BoxRow(f, *box, o) for (f, o), box in read_boxes(self.boxes, self.axis).items()]
        masks = None
        if self.controller.masks:
            masks = np.zeros(spatial_shape(self.image), np.int32)
            masks = np.moveaxis(masks, self.axis, 0)
            for (f, o), m in self.controller.masks.items():
                masks[f][m] = o
        return Prompts(tuple(rows), tuple(boxes), masks)

    def _session_image(self, saved):
        """(image layer, layers opened for it): the session's image, opened from its file if needed."""
        from napari.layers import Image

        name, path = saved.image_layer, saved.image_path
        if name in self.viewer.layers and isinstance(self.viewer.layers[name], Image):
            return self.viewer.layers[name], []
        if path and Path(path).exists():
            try:
                layers = list(self.viewer.open(path))
            except Exception as exc:  # napari's readers fail in many ways
                raise InputError(
                    f"session: cannot open the image {path}: {one_line(exc)}"
                ) from None
            images = [layer for layer in layers if isinstance(layer, Image)]
            if images:
                return images[0], layers
            for layer in layers:
                self.viewer.layers.remove(layer)
        raise InputError(f"session: open the image {name or path!r} first, then load the session")

    def _restore(self, saved, image) -> None:
        """Install a validated session (UI thread); nothing here can fail on its content."""
        ctrl = self.controller
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
        ctrl.close_session()
        prompts = saved.prompts
        self._syncing = True
        try:
            self.points.selected_data = set()
            self.points.data = np.empty((0, 3))
            self.boxes.data = []
            add_point_rows(self.points, list(prompts.points), self.axis)
            add_box_rows(self.boxes, list(prompts.boxes), self.axis)
            ctrl.masks = _masks_from_volume(prompts.masks)
            self.labels.data = np.ascontiguousarray(np.moveaxis(saved.labels, 0, self.axis))
            ctrl.objects = dict(saved.objects)
            # The session's labels of its objects were written by napari-sam2.
            ctrl.written, ctrl.painted = set(saved.objects), {}
            ctrl.session_id = saved.session_id or ctrl.session_id
            ctrl.session_folder = saved.folder
            self.labels.selected_label = saved.selected_label or min(ctrl.objects, default=1)
        finally:
            self._syncing = False
        self._saved_reached = {o: dict(f) for o, f in saved.reached.items()}
        self._restyle()
        self.session_panel.show_folder(saved.folder)
        # The next session opened replays the prompts without writing labels, even
        # if the session's model cannot be loaded and the user loads another.
        self._restoring = True
        source = saved.model.source
        if source and (ctrl.model is None or ctrl.model_source != source):
            self._reload_for_session(saved.model)
        else:
            self._open_session()

    def _reload_for_session(self, model) -> None:
        """Load the session's model (a SavedModel), then open the session with its prompts."""
        source, device, precision = model.source, model.device, model.precision

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
                (source, device, model.image_size, self._download_cb),
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
            check_session_folder(target, self._session_inputs())
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


def _masks_from_volume(volume) -> dict:
    """{(frame, obj): bool mask} from a (T, H, W) mask-prompt volume."""
    from .prompt_io import mask_frames

    out = {}
    for t in mask_frames(volume):
        plane = np.asarray(volume[t])
        for v in np.unique(plane):
            if v:
                out[(int(t), int(v))] = plane == v
    return out
