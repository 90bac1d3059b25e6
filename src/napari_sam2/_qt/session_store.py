"""Saving, autosaving and restoring widget sessions (one part of the SAM 2 widget).

A session folder holds ``points.csv``, ``boxes.csv`` and ``mask_prompts.tif``
(:mod:`napari_sam2.files.prompt_files`), ``labels.tif`` and ``session.json``
(:mod:`napari_sam2.files.session_files`), and the JSON files other parts of the
widget keep there (``effort.json``, ``review.json``: ``extra_files``). Files are
written in a worker from a snapshot taken on the UI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InputError, one_line
from ..files.output_rules import check_session_folder
from ..files.session_files import (
    LABELS_FILE,
    default_session_folder,
    free_folder,
    write_session_json,
)
from .controller import Sam2Controller
from .jobs import Job, JobQueue
from .layers import LayerSet, add_box_rows, add_point_rows, spatial_shape
from .prompt_sync import PromptSync


class SessionStore:
    """Writes the widget's state to a session folder and puts a saved one back in the layers."""

    def __init__(
        self,
        viewer,
        controller: Sam2Controller,
        jobs: JobQueue,
        layers: LayerSet,
        prompts: PromptSync,
        panel,
        on_error: Callable[[BaseException], None],
        extra_files: Callable[[], dict[str, dict | None]] | None = None,
    ) -> None:
        self._viewer = viewer
        self._extra_files = extra_files
        self._controller = controller
        self._jobs = jobs
        self._layers = layers
        self._prompts = prompts
        self._panel = panel
        self._on_error = on_error

    def autosave_folder(self) -> Path:
        """The current session folder; else a default one that holds no other session."""
        ctrl, image = self._controller, self._layers.image
        if ctrl.session_folder is not None:
            return ctrl.session_folder
        path = getattr(getattr(image, "source", None), "path", None)
        return free_folder(default_session_folder(path, image.name), ctrl.session_id)

    def inputs(self) -> list:
        """Files a session folder must never replace or sit inside (the image's source)."""
        return [getattr(getattr(self._layers.image, "source", None), "path", None)]

    def autosave(self) -> None:
        target = self.autosave_folder()
        check_session_folder(target, self.inputs(), "autosave folder")
        first = self._controller.session_folder is None
        self.write(target)
        if first:
            from napari.utils.notifications import show_info

            show_info(f"napari-sam2: autosaving the session to {target}")

    def write(self, folder: Path) -> Job:
        """Snapshot on the UI thread, write the files in a worker (queued job)."""
        from ..files.prompt_files import write_prompts
        from ..files.tiff import write_label_tiff

        lay, ctrl = self._layers, self._controller
        prompts = self._prompts.rows()
        # On disk the stack axis comes first: (T, H, W), like the CLI's label files.
        labels = np.moveaxis(np.array(lay.labels.data, dtype=np.int32, copy=True), lay.axis, 0)
        meta = ctrl.session_meta(
            image={
                "layer": lay.image.name,
                "path": getattr(getattr(lay.image, "source", None), "path", None),
                "shape": list(spatial_shape(lay.image)),
            },
            layers={"points": lay.points.name, "boxes": lay.boxes.name, "labels": lay.labels.name},
            stack_axis=lay.axis,
            extra={
                "reached": {
                    str(o): sorted([f, int(r)] for f, r in fr.items())
                    for o, fr in ctrl.reached.items()
                },
                "selected_label": self._prompts.current_object(),
            },
        )

        extra = self._extra_files() if self._extra_files is not None else {}

        def work():
            folder.mkdir(parents=True, exist_ok=True)
            write_prompts(folder, prompts)
            write_label_tiff(folder / LABELS_FILE, labels)
            for name, data in extra.items():
                if data is not None:
                    _write_json(folder / name, data)
            write_session_json(folder, meta)
            return folder

        def done(path) -> None:
            ctrl.session_folder = Path(path)
            self._panel.show_folder(path)

        return self._jobs.submit(Job("save", work, on_done=done, on_error=self._on_error))

    def session_image(self, saved):
        """(image layer, layers opened for it): the session's image, opened from its file if needed."""
        from napari.layers import Image

        name, path = saved.image_layer, saved.image_path
        if name in self._viewer.layers and isinstance(self._viewer.layers[name], Image):
            return self._viewer.layers[name], []
        if path and Path(path).exists():
            try:
                layers = list(self._viewer.open(path))
            except Exception as exc:  # napari's readers fail in many ways
                raise InputError(
                    f"session: cannot open the image {path}: {one_line(exc)}"
                ) from None
            images = [layer for layer in layers if isinstance(layer, Image)]
            if images:
                return images[0], layers
            for layer in layers:
                self._viewer.layers.remove(layer)
        raise InputError(f"session: open the image {name or path!r} first, then load the session")

    def restore_layers(self, saved) -> dict:
        """Put a validated saved session's prompts, labels and objects in place.

        ``saved`` is a :class:`~napari_sam2.files.saved_session.SavedSession`;
        nothing here can fail on its content. The layers of the session's image
        must be attached. Returns {object: {frame: reached backward}} as saved.
        """
        lay, ctrl = self._layers, self._controller
        prompts = saved.prompts
        with self._prompts.quiet():
            lay.points.selected_data = set()
            lay.points.data = np.empty((0, 3))
            lay.boxes.data = []
            add_point_rows(lay.points, list(prompts.points), lay.axis)
            add_box_rows(lay.boxes, list(prompts.boxes), lay.axis)
            ctrl.restore(saved, _masks_from_volume(prompts.masks))
            lay.labels.data = np.ascontiguousarray(np.moveaxis(saved.labels, 0, lay.axis), np.int32)
            lay.labels.selected_label = saved.selected_label or min(ctrl.objects, default=1)
        self._prompts.restyle()
        self._panel.show_folder(saved.folder)
        return {o: dict(f) for o, f in saved.reached.items()}


def _write_json(path: Path, data: dict) -> None:
    import json

    from ..files.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")


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
