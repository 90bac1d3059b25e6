"""The Qt panels of the SAM 2 dock widget: plain views with signals, no logic.

Each panel is a QGroupBox holding its controls as attributes; the widget
(:mod:`napari_sam2._qt.widget`) connects their signals to its actions.
"""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QColor, QIcon, QPainter, QPixmap
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

LOCAL_FILE = "Local .pt file..."
DEVICES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("float32", "bfloat16")
IMAGE_SIZES = (512, 768, 1024)
IMAGE_SIZE_TIP = (
    "The model's input size in pixels. 1024 is what SAM 2 was trained at: the most "
    "accurate, and the slowest (tens of seconds per frame on a laptop CPU). 512 is "
    "several times faster, and misses small or thin structures more often."
)
BF16_TIP = (
    "bfloat16 runs the model under autocast: faster, less memory, masks can differ "
    "slightly. Offered on CUDA GPUs and on CPUs with bf16 matrix instructions "
    "(AVX-512 BF16 or AMX); elsewhere the model runs float32."
)


def _label(text: str, wrap: bool = True) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(wrap)
    return label


def _swatch(colour: QColor, size: int = 12) -> QIcon:
    """A small square icon of one colour with a dark outline."""
    pixmap = QPixmap(size, size)
    pixmap.fill(colour)
    painter = QPainter(pixmap)
    painter.setPen(QColor(0, 0, 0, 160))
    painter.drawRect(0, 0, size - 1, size - 1)
    painter.end()
    return QIcon(pixmap)


class ModelPanel(QGroupBox):
    """Checkpoint (registry name or local file), device, precision, Load."""

    load_clicked = Signal()

    def __init__(
        self,
        names: tuple[str, ...],
        default: str | None = None,
        tips: dict[str, str] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Model", parent)
        self.checkpoint = QComboBox()
        self.checkpoint.addItems([*names, LOCAL_FILE])
        for i, name in enumerate(names):
            if tips and name in tips:
                self.checkpoint.setItemData(i, tips[name], Qt.ToolTipRole)
        if default in names:
            self.checkpoint.setCurrentText(default)
        self.checkpoint.setToolTip(
            "Official SAM 2 / 2.1 checkpoints are downloaded once and cached"
        )
        self.path = QLineEdit()
        self.path.setPlaceholderText("path/to/checkpoint.pt")
        self.browse = QPushButton("Browse...")
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.precision = QComboBox()
        self.precision.addItems(PRECISIONS)
        self.image_size = QComboBox()
        self.image_size.addItems([str(n) for n in IMAGE_SIZES])
        self.image_size.setCurrentText("1024")
        self.image_size.setToolTip(IMAGE_SIZE_TIP)
        self.load = QPushButton("Load model")
        self.status = _label("No model loaded")
        self.progress = QProgressBar()
        self.progress.setVisible(False)

        grid = QGridLayout(self)
        grid.addWidget(QLabel("Checkpoint"), 0, 0)
        grid.addWidget(self.checkpoint, 0, 1, 1, 2)
        grid.addWidget(self.path, 1, 0, 1, 2)
        grid.addWidget(self.browse, 1, 2)
        grid.addWidget(QLabel("Device"), 2, 0)
        grid.addWidget(self.device, 2, 1)
        grid.addWidget(self.precision, 2, 2)
        grid.addWidget(QLabel("Input px"), 3, 0)
        grid.addWidget(self.image_size, 3, 1)
        grid.addWidget(self.load, 3, 2)
        grid.addWidget(self.progress, 4, 0, 1, 3)
        grid.addWidget(self.status, 5, 0, 1, 3)
        grid.setColumnStretch(1, 1)

        self.checkpoint.currentTextChanged.connect(self._show_path)
        self.browse.clicked.connect(self._browse)
        self.load.clicked.connect(self.load_clicked)
        self._show_path(self.checkpoint.currentText())

    def source(self) -> str:
        """The registry name or the local file path chosen."""
        if self.checkpoint.currentText() == LOCAL_FILE:
            return self.path.text().strip()
        # Entries added by other parts (fine-tuned checkpoints) carry their path.
        return self.checkpoint.currentData() or self.checkpoint.currentText()

    def show_loaded(self, source: str, device: str, precision: str, image_size: int) -> None:
        """Make the boxes say what is loaded (e.g. after a session brought its own model)."""
        names = [self.checkpoint.itemText(i) for i in range(self.checkpoint.count())]
        if self.checkpoint.findData(str(source)) >= 0:
            self.checkpoint.setCurrentIndex(self.checkpoint.findData(str(source)))
        elif source in names:
            self.checkpoint.setCurrentText(source)
        else:
            self.checkpoint.setCurrentText(LOCAL_FILE)
            self.path.setText(str(source))
        if device in DEVICES:
            self.device.setCurrentText(device)
        self.precision.setCurrentText(precision)
        if str(image_size) not in [str(n) for n in IMAGE_SIZES]:
            self.image_size.addItem(str(image_size))
        self.image_size.setCurrentText(str(image_size))

    def set_bf16_allowed(self, allowed: bool) -> None:
        """Enable the bfloat16 entry only where the device computes it natively."""
        item = self.precision.model().item(PRECISIONS.index("bfloat16"))
        item.setEnabled(allowed)
        item.setToolTip(BF16_TIP)
        self.precision.setToolTip(BF16_TIP)
        if not allowed and self.precision.currentText() == "bfloat16":
            self.precision.setCurrentText("float32")

    def _show_path(self, text: str) -> None:
        local = text == LOCAL_FILE
        self.path.setVisible(local)
        self.browse.setVisible(local)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "SAM 2 checkpoint", "", "PyTorch checkpoints (*.pt *.pth);;All files (*)"
        )
        if path:
            self.path.setText(path)


class DataPanel(QGroupBox):
    """Image layer, which axis is the stack (time or z), and what kind of stack it is."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Image", parent)
        self.image = QComboBox()
        self.image.setToolTip("A 3D image layer: frames x rows x cols (RGB allowed)")
        self.axis = QComboBox()
        self.axis.setToolTip("The axis along which objects are tracked")
        self.kind = QComboBox()
        self.kind.addItems(["time-lapse", "z-stack"])
        self.kind.setToolTip("A z-stack is propagated both ways from the prompted slice")
        grid = QGridLayout(self)
        grid.addWidget(QLabel("Layer"), 0, 0)
        grid.addWidget(self.image, 0, 1, 1, 3)
        grid.addWidget(QLabel("Axis"), 1, 0)
        grid.addWidget(self.axis, 1, 1)
        grid.addWidget(self.kind, 1, 2, 1, 2)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(2, 1)

    def set_axes(self, labels: list[str], current: int) -> None:
        self.axis.blockSignals(True)
        self.axis.clear()
        self.axis.addItems(labels)
        self.axis.setCurrentIndex(current)
        self.axis.blockSignals(False)


class PromptPanel(QGroupBox):
    """How to click, the negative toggle, and the mask-prompt button."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Prompts", parent)
        self.negative = QCheckBox("Negative clicks (N)")
        self.negative.setToolTip(
            "Toggle with the N key on the points layer; Shift+click is always negative"
        )
        self.use_mask = QPushButton("Use painted mask")
        self.use_mask.setToolTip(
            "Send the selected label's pixels on the current frame to SAM 2 as a mask prompt"
        )
        self.clear_frame = QPushButton("Clear frame")
        self.clear_frame.setToolTip(
            "Delete the current object's clicks, box and mask on this frame"
        )
        self.setToolTip(
            "Click adds to the selected object, Shift+click excludes; "
            "rectangles on the boxes layer are boxes."
        )
        layout = QVBoxLayout(self)
        layout.addWidget(self.negative)
        row = QHBoxLayout()
        row.addWidget(self.use_mask)
        row.addWidget(self.clear_frame)
        layout.addLayout(row)


class ObjectsPanel(QGroupBox):
    """One row per object: its label colour and id, and an editable name."""

    add_clicked = Signal()
    remove_clicked = Signal(int)
    renamed = Signal(int, str)
    selected = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Objects", parent)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Id", "Name"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setMinimumHeight(70)
        self.table.setMaximumHeight(100)
        self.add = QPushButton("Add object")
        self.remove = QPushButton("Remove object")
        self.remove.setToolTip(
            "Deletes the object's prompts and all its pixels on every frame (undoable)"
        )
        self.table.setToolTip(
            "Object ids are label values. Pixels painted with an id before it is tracked "
            "stay yours: predictions never overwrite them."
        )
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        row = QHBoxLayout()
        row.addWidget(self.add)
        row.addWidget(self.remove)
        layout.addLayout(row)

        self.add.clicked.connect(self.add_clicked)
        self.remove.clicked.connect(self._remove)
        self.table.itemChanged.connect(self._item_changed)
        self.table.itemSelectionChanged.connect(self._selection)

    def set_objects(self, objects: dict[int, str], colours: dict[int, tuple], current: int) -> None:
        """Rebuild the rows; ``colours`` RGBA floats per id."""
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        for obj, name in sorted(objects.items()):
            r = self.table.rowCount()
            self.table.insertRow(r)
            ident = QTableWidgetItem(f"  {obj}  ")
            ident.setData(Qt.UserRole, obj)
            ident.setFlags(Qt.ItemIsSelectable | Qt.ItemIsEnabled)
            rgba = colours.get(obj, (0.5, 0.5, 0.5, 1.0))
            colour = QColor.fromRgbF(*(float(c) for c in rgba[:3]))
            ident.setBackground(colour)
            # The background hides under the selection highlight; the swatch does not.
            ident.setIcon(_swatch(colour))
            # Dark text on light colours, light on dark, so ids stay readable.
            bright = 0.299 * colour.redF() + 0.587 * colour.greenF() + 0.114 * colour.blueF()
            ident.setForeground(QColor("black") if bright > 0.55 else QColor("white"))
            ident.setTextAlignment(Qt.AlignCenter)
            label = QTableWidgetItem(name)
            label.setData(Qt.UserRole, obj)
            self.table.setItem(r, 0, ident)
            self.table.setItem(r, 1, label)
        self.table.blockSignals(False)
        self.select(current)

    def select(self, obj: int) -> None:
        self.table.blockSignals(True)
        self.table.clearSelection()
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.UserRole) == obj:
                self.table.selectRow(r)
                break
        self.table.blockSignals(False)

    def current(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return int(self.table.item(rows[0].row(), 0).data(Qt.UserRole))

    def _remove(self) -> None:
        obj = self.current()
        if obj is not None:
            self.remove_clicked.emit(obj)

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() == 1:
            self.renamed.emit(int(item.data(Qt.UserRole)), item.text().strip())

    def _selection(self) -> None:
        obj = self.current()
        if obj is not None:
            self.selected.emit(obj)


class PropagatePanel(QGroupBox):
    """Direction, frame range, Propagate / Cancel, progress and ETA."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Propagate", parent)
        self.direction = QComboBox()
        self.direction.addItems(["both", "forward", "backward"])
        self.all_frames = QCheckBox("All frames")
        self.all_frames.setChecked(True)
        self.first = QSpinBox()
        self.last = QSpinBox()
        for box in (self.first, self.last):
            box.setEnabled(False)
        self.auto = QCheckBox("Re-propagate after corrections")
        self.auto.setChecked(True)
        self.auto.setToolTip("A new prompt on a tracked frame re-tracks the frames after it")
        self.run = QPushButton("Propagate")
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.status = _label("")

        self.direction.setToolTip("Track forward, backward or both ways from the prompts")
        grid = QGridLayout(self)
        grid.addWidget(self.direction, 0, 0)
        grid.addWidget(self.run, 0, 1, 1, 2)
        grid.addWidget(self.cancel, 0, 3)
        grid.addWidget(self.all_frames, 1, 0)
        grid.addWidget(self.first, 1, 1)
        grid.addWidget(QLabel("to"), 1, 2)
        grid.addWidget(self.last, 1, 3)
        grid.addWidget(self.auto, 2, 0, 1, 4)
        grid.addWidget(self.progress, 3, 0, 1, 4)
        grid.addWidget(self.status, 4, 0, 1, 4)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        self.all_frames.toggled.connect(
            lambda on: [b.setEnabled(not on) for b in (self.first, self.last)]
        )

    def set_frames(self, n: int) -> None:
        for box in (self.first, self.last):
            box.setRange(0, max(0, n - 1))
        self.first.setValue(0)
        self.last.setValue(max(0, n - 1))

    def frame_range(self, n: int) -> tuple[int, int]:
        if self.all_frames.isChecked():
            return 0, n - 1
        return self.first.value(), self.last.value()


class SessionPanel(QGroupBox):
    """Save / load a session folder; autosave after each propagation."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Session", parent)
        self.save = QPushButton("Save session...")
        self.load = QPushButton("Load session...")
        self.autosave = QCheckBox("Autosave after each propagation")
        self.autosave.setChecked(True)
        self.folder = _label("Not saved yet")
        self.folder.setStyleSheet("color: gray")
        self.folder.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.autosave.setText("Autosave")
        self.autosave.setToolTip("Save the session after each propagation")
        self.folder.setWordWrap(False)
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(self.save)
        row.addWidget(self.load)
        layout.addLayout(row)
        row2 = QHBoxLayout()
        row2.addWidget(self.autosave)
        row2.addWidget(self.folder, 1)
        layout.addLayout(row2)

    def show_folder(self, folder) -> None:
        """Name the session folder; the full path is in the tooltip."""
        from pathlib import Path

        self.folder.setText(f"Session: {Path(folder).name}")
        self.folder.setToolTip(str(folder))

    def ask_folder(self, title: str) -> str:
        return QFileDialog.getExistingDirectory(self, title)
