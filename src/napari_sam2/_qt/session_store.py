"""Saving, autosaving and loading widget sessions (a mixin of the SAM 2 widget).

A session folder holds ``points.csv``, ``boxes.csv`` and ``mask_prompts.tif``
(:mod:`napari_sam2.files.prompt_files`), ``labels.tif`` and ``session.json``. Files are
written in a worker from a snapshot taken on the UI thread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QMessageBox

from ..errors import InputError
from .controller import (
    LABELS_FILE,
    default_session_folder,
    free_folder,
    session_id_of,
    write_session_json,
)
from .jobs import Job
from .layers import add_box_rows, add_point_rows, read_boxes, spatial_shape


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

    def _autosave(self) -> None:
        target = self._autosave_folder()
        first = self.controller.session_folder is None
        self._write_session(target, wait=False)
        if first:
            from napari.utils.notifications import show_info

            show_info(f"napari-sam2: autosaving the session to {target}")

    def _write_session(self, folder: Path, wait: bool) -> None:
        """Snapshot on the UI thread, write the files in a worker."""
        from ..files.prompt_files import write_label_tiff, write_prompts

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
        from ..files.prompt_files import BoxRow, PointRow, Prompts

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

    def _session_image(self, meta: dict):
        from napari.layers import Image

        info = meta.get("image") or {}
        name = info.get("layer")
        if name in self.viewer.layers and isinstance(self.viewer.layers[name], Image):
            return self.viewer.layers[name]
        path = info.get("path")
        if path and Path(path).exists():
            layers = self.viewer.open(path)
            images = [layer for layer in layers if isinstance(layer, Image)]
            if images:
                return images[0]
        raise InputError(f"session: open the image {name or path!r} first, then load the session")

    def _restore(self, meta: dict, image, labels: np.ndarray, prompts, folder: Path) -> None:
        ctrl = self.controller
        self.data_panel.image.setCurrentText(image.name)
        if self.image is not image:
            self._image_chosen(image.name)
        axis = int(meta.get("stack_axis", 0))
        if axis != self.axis:
            self.data_panel.axis.setCurrentIndex(axis)
        kind = "z-stack" if meta.get("stack_kind") == "z" else "time-lapse"
        self.data_panel.kind.setCurrentText(kind)
        # Choosing the image or axis may have queued a session for the old prompts.
        self.jobs.cancel()
        self.jobs.wait(None)
        ctrl.close_session()
        self._syncing = True
        try:
            self.points.selected_data = set()
            self.points.data = np.empty((0, 3))
            self.boxes.data = []
            add_point_rows(self.points, list(prompts.points), self.axis)
            add_box_rows(self.boxes, list(prompts.boxes), self.axis)
            ctrl.restore(meta, folder, _masks_from_volume(prompts.masks))
            self.labels.data = np.ascontiguousarray(np.moveaxis(labels, 0, self.axis), np.int32)
            self.labels.selected_label = int(
                meta.get("selected_label") or min(ctrl.objects, default=1)
            )
        finally:
            self._syncing = False
        self._saved_reached = {
            int(o): {int(f): bool(r) for f, r in pairs}
            for o, pairs in (meta.get("reached") or {}).items()
        }
        self._restyle()
        self.session_panel.show_folder(folder)
        # The next session opened replays the prompts without writing labels, even
        # if the session's model cannot be loaded and the user loads another.
        self._restoring = True
        source = (meta.get("model") or {}).get("source")
        if source and (ctrl.model is None or ctrl.model_source != source):
            self._reload_for_session(meta)
        else:
            self._open_session()

    def _reload_for_session(self, meta: dict) -> None:
        """Load the session's model (then open the session with its prompts)."""
        model = meta.get("model") or {}
        source = model["source"]
        device = model.get("device", "auto")
        precision = model.get("precision", "float32")
        image_size = int(model.get("image_size") or 1024)

        def loaded(m) -> None:
            self.controller.set_model(m, source, device, precision)
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
    from ..files.prompt_files import mask_frames

    out = {}
    for t in mask_frames(volume):
        plane = np.asarray(volume[t])
        for v in np.unique(plane):
            if v:
                out[(int(t), int(v))] = plane == v
    return out
