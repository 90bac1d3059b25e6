"""*Fine-tune on these sessions...*: train the loaded model further, in a worker (one part of the widget).

:class:`Finetuner` runs :func:`napari_sam2.training.finetune.finetune` on the
current session (its image and labels, as they are in the viewer) and on saved
session folders, in a thread of its own: napari stays live, and the widget's
own jobs (previews, propagation) keep running on the loaded model, which the
training never touches (it trains a copy). Progress, ETA and Cancel are in a
:class:`FinetunePanel`; Cancel stops after the step being computed.

The new checkpoint is a new file in :func:`~napari_sam2.training.finetune.finetuned_folder`,
written in one rename after the last step; it is then added to the model
picker with its provenance (base model, sessions, steps) as tooltip. A
cancelled or failed run leaves no file and no picker entry, and the old
checkpoint is never written to.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..errors import InputError
from ..training.finetune import (
    FinetuneSettings,
    describe,
    finetune,
    finetuned_checkpoints,
    finetuned_folder,
    new_checkpoint_path,
    session_clips,
)
from .controller import Sam2Controller, format_seconds
from .layers import LayerSet, image_frames

__all__ = ["FinetuneDialog", "FinetunePanel", "Finetuner"]

FINETUNED_ROLE = Qt.UserRole + 1  # marks the picker entries this part added


class FinetunePanel(QGroupBox):
    """The button, Cancel, a progress bar and the status (step, loss, ETA)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Improve the model", parent)
        self.run = QPushButton("Fine-tune on these sessions...")
        self.run.setToolTip(
            "Train the loaded model further on this session's labels and on saved sessions; "
            "the result is a new checkpoint in the model picker (the old one stays)"
        )
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        grid = QGridLayout(self)
        grid.addWidget(self.run, 0, 0)
        grid.addWidget(self.cancel, 0, 1)
        grid.addWidget(self.progress, 1, 0, 1, 2)
        grid.addWidget(self.status, 2, 0, 1, 2)
        grid.setColumnStretch(0, 1)


class FinetuneDialog(QDialog):
    """Which sessions, how many steps, whether the image encoder stays frozen."""

    def __init__(self, current: str | None, frozen: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Fine-tune on these sessions")
        self.include_current = QCheckBox(f"This session ({current})" if current else "This session")
        self.include_current.setChecked(current is not None)
        self.include_current.setEnabled(current is not None)
        self.folders = QListWidget()
        self.folders.setToolTip("Saved session folders whose image file is still in place")
        add, remove = QPushButton("Add session folder..."), QPushButton("Remove")
        self.steps = QSpinBox()
        self.steps.setRange(1, 100_000)
        self.steps.setValue(FinetuneSettings().steps)
        self.freeze = QCheckBox("Freeze the image encoder (much faster on a CPU)")
        self.freeze.setChecked(frozen)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        layout = QVBoxLayout(self)
        layout.addWidget(self.include_current)
        layout.addWidget(self.folders)
        row = QHBoxLayout()
        row.addWidget(add)
        row.addWidget(remove)
        layout.addLayout(row)
        form = QFormLayout()
        form.addRow("Steps", self.steps)
        layout.addLayout(form)
        layout.addWidget(self.freeze)
        layout.addWidget(buttons)
        add.clicked.connect(self._add)
        remove.clicked.connect(lambda: self.folders.takeItem(self.folders.currentRow()))
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)

    def sessions(self) -> list[str]:
        return [self.folders.item(i).text() for i in range(self.folders.count())]

    def _add(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Session folder")
        if folder and folder not in self.sessions():
            self.folders.addItem(folder)


class _Bridge(QObject):
    """Carries progress from the training thread to the UI thread."""

    progressed = Signal(int, int, float)  # step done, steps, loss


class Finetuner:
    """Runs fine-tuning in a worker thread and adds its checkpoints to the model picker.

    ``picker``: the model panel's checkpoint combo box; ``folder()``: where
    fine-tuned checkpoints go (default :func:`finetuned_folder`).
    """

    def __init__(
        self,
        controller: Sam2Controller,
        layers: LayerSet,
        picker,
        panel: FinetunePanel,
        on_error: Callable[[BaseException], None],
        folder: Callable[[], Path] = finetuned_folder,
    ) -> None:
        self._controller = controller
        self._layers = layers
        self._picker = picker
        self._panel = panel
        self._on_error = on_error
        self._folder = folder
        self._bridge = _Bridge()
        self._bridge.progressed.connect(self._progressed)
        self._worker = None
        self._stop = False
        self._start_time = 0.0
        self.last_checkpoint: Path | None = None
        panel.run.clicked.connect(self._clicked)
        panel.cancel.clicked.connect(self.cancel)
        self.refresh_picker()

    # -- the picker -----------------------------------------------------------

    def refresh_picker(self) -> None:
        """List the fine-tuned checkpoints in the picker, newest first, before "Local .pt file..."."""
        combo = self._picker
        for i in reversed(range(combo.count())):
            if combo.itemData(i, FINETUNED_ROLE):
                combo.removeItem(i)
        at = combo.count() - 1  # before the local-file entry
        for path, prov in reversed(finetuned_checkpoints(self._folder())):
            combo.insertItem(at, path.stem, str(path))
            combo.setItemData(at, True, FINETUNED_ROLE)
            combo.setItemData(at, f"{path}\n{describe(prov)}", Qt.ToolTipRole)

    def entries(self) -> list[tuple[str, str, str]]:
        """(name, path, tooltip) of the fine-tuned checkpoints in the picker."""
        combo = self._picker
        return [
            (combo.itemText(i), combo.itemData(i), combo.itemData(i, Qt.ToolTipRole))
            for i in range(combo.count())
            if combo.itemData(i, FINETUNED_ROLE)
        ]

    # -- running --------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._worker is not None

    def start(
        self,
        sessions=(),
        include_current: bool = True,
        settings: FinetuneSettings | None = None,
        wait: bool = False,
    ) -> None:
        """Fine-tune the loaded model on the current session and/or saved ``sessions`` folders."""
        from napari.qt.threading import create_worker

        ctrl = self._controller
        if self.running:
            raise InputError("fine-tune: a fine-tuning run is already going; cancel it first")
        if ctrl.model is None:
            raise InputError("model: load a model first")
        folders = [str(Path(s).expanduser()) for s in sessions]
        stacks, names = [], list(folders)
        if include_current:
            stacks.append(self._current_clip())
            names.insert(0, str(ctrl.session_folder or f"unsaved: {self._layers.image.name}"))
        if not stacks and not folders:
            raise InputError("sessions: choose this session or at least one session folder")
        settings = settings or FinetuneSettings.for_base(ctrl.model_source)
        base = ctrl.model_source or "model"
        target = new_checkpoint_path(self._folder(), base)
        provenance = {
            "base_model": base,
            "sessions": names,
            "image_size": int(ctrl.model.cfg.image_size),
        }
        model, bridge = ctrl.model, self._bridge

        def work():
            clips = stacks + session_clips(folders)
            return finetune(
                model,
                clips,
                target,
                settings,
                provenance,
                progress=lambda step, total, loss: bridge.progressed.emit(step, total, loss),
                should_stop=lambda: self._stop,
            )

        self._stop = False
        self._start_time = time.monotonic()
        panel = self._panel
        panel.run.setEnabled(False)
        panel.cancel.setEnabled(True)
        panel.progress.setVisible(True)
        panel.progress.setRange(0, settings.steps)
        panel.progress.setValue(0)
        panel.status.setText(f"Fine-tuning {Path(base).name}: preparing...")
        worker = create_worker(work, _ignore_errors=True)
        worker.returned.connect(self._returned)
        worker.errored.connect(self._errored)
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()
        if wait:
            self.wait()

    def cancel(self) -> None:
        """Stop after the step being computed; nothing is written."""
        if self.running:
            self._stop = True
            self._panel.status.setText("Cancelling: waiting for the current step to finish...")

    def wait(self, timeout: float | None = None) -> bool:
        """Process Qt events until the run is over; False on timeout."""
        from qtpy.QtWidgets import QApplication

        end = None if timeout is None else time.monotonic() + timeout
        while self.running:
            if end is not None and time.monotonic() > end:
                return False
            QApplication.processEvents()
            time.sleep(0.005)
        return True

    # -- internals ------------------------------------------------------------

    def _current_clip(self):
        """The current image and labels, frames first (a snapshot taken now)."""
        from ..training.data import Clip

        lay = self._layers
        if lay.image is None or lay.labels is None:
            raise InputError("image: pick an image in the SAM 2 widget first")
        data, rgb = image_frames(lay.image)
        frames = np.moveaxis(np.asarray(data), lay.axis, 0)
        labels = np.moveaxis(np.array(lay.labels.data, dtype=np.int32, copy=True), lay.axis, 0)
        if not labels.any():
            raise InputError("sessions: this session has no labels yet; segment something first")
        return Clip(frames, labels)

    def _clicked(self) -> None:
        ctrl = self._controller
        try:
            if ctrl.model is None:
                raise InputError("model: load a model first")
        except InputError as exc:
            self._on_error(exc)
            return
        current = self._layers.image.name if self._layers.image is not None else None
        device = next(ctrl.model.parameters()).device
        dialog = FinetuneDialog(current, FinetuneSettings().frozen_on(device), self._panel)
        if ctrl.session_folder is not None:
            dialog.include_current.setText(f"This session ({Path(ctrl.session_folder).name})")
        if dialog.exec_() != QDialog.Accepted:
            return
        settings = FinetuneSettings.for_base(
            ctrl.model_source,
            steps=dialog.steps.value(),
            freeze_image_encoder=dialog.freeze.isChecked(),
        )
        try:
            self.start(dialog.sessions(), dialog.include_current.isChecked(), settings)
        except InputError as exc:
            self._on_error(exc)

    def _alive(self) -> bool:
        """False once Qt deleted the panel (the widget closed while training ran)."""
        try:
            self._panel.objectName()
        except RuntimeError:
            return False
        return True

    def _progressed(self, step: int, total: int, loss: float) -> None:
        if not self._alive():
            return
        elapsed = time.monotonic() - self._start_time
        left = elapsed / max(step, 1) * (total - step)
        self._panel.progress.setValue(step)
        if self._stop:
            return
        self._panel.status.setText(
            f"Step {step}/{total}, loss {loss:.3f}, {format_seconds(left)} left"
        )

    def _returned(self, path) -> None:
        if path is not None:
            self.last_checkpoint = Path(path)
        if not self._alive():
            return
        if path is None:
            self._panel.status.setText("Cancelled: no checkpoint written")
            return
        self.refresh_picker()
        self._panel.status.setText(
            f"Done: {Path(path).stem} is in the model picker (load it to use it)"
        )

    def _errored(self, exc: BaseException) -> None:
        if not self._alive():
            return
        self._panel.status.setText("Failed: no checkpoint written")
        self._on_error(exc)

    def _finished(self) -> None:
        self._worker = None
        self._stop = False
        if not self._alive():
            return
        panel = self._panel
        panel.run.setEnabled(True)
        panel.cancel.setEnabled(False)
        panel.progress.setVisible(False)
