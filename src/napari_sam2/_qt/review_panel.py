"""The review queue of the SAM 2 widget: where tracking probably failed, each object's worst first.

:class:`ReviewNavigator` (one part of the widget) feeds a
:class:`~napari_sam2.review.session_review.SessionReview` with every frame a
propagation writes, lists its open (frame, object) pairs in a
:class:`ReviewPanel`, and walks them: *Next* / *Previous* (keys ``.`` and
``,`` in the viewer) move the viewer to the frame and select the object;
*Accept* takes the current mask as fine. A correction there (a click, a box,
a painted mask) takes the pair out of the queue, the widget re-propagates as
usual, and the re-propagated frames come back with their new scores. Every
object of the session is covered, however it was made.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..review.queue import ReviewItem
from ..review.score import risks
from ..review.session_review import REVIEW_FILE, SessionReview
from .controller import Sam2Controller
from .layers import LayerSet

__all__ = ["NEXT_KEY", "PREVIOUS_KEY", "REVIEW_FILE", "ReviewNavigator", "ReviewPanel"]

NEXT_KEY, PREVIOUS_KEY = ".", ","
ROWS = 200  # rows listed (the queue itself keeps every pair)
REFRESH_MS = 200  # the list is rebuilt this long after the last propagated frame


def why(item: ReviewItem) -> str:
    """The strongest risks behind a score, for the row's tooltip."""
    if item.signals is None:
        return f"score {item.score:.2f}"
    named = sorted(risks(item.signals).items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in named if v > 0.01)
    return f"score {item.score:.2f}: " + (text or "no risk signal")


class ReviewPanel(QGroupBox):
    """The queue as a table (frame, object, score), with Previous / Next / Accept."""

    chosen = Signal(int, int)  # frame, object: a row was clicked

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Review", parent)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Frame", "Object", "Suspicion"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setMinimumHeight(70)
        self.table.setMaximumHeight(130)
        self.table.setToolTip(
            "Masks that tracking probably got wrong, each object's worst first (the model's own "
            "confidence, jumps in size or place, fragments, forward/backward disagreement, a mask "
            "another object claims too)"
        )
        self.previous = QPushButton(f"Previous ({PREVIOUS_KEY})")
        self.next = QPushButton(f"Next ({NEXT_KEY})")
        self.accept = QPushButton("Accept")
        self.accept.setToolTip("The mask is fine: take it out of the queue")
        self.status = QLabel("Propagate to fill the queue")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        row = QHBoxLayout()
        for button in (self.previous, self.next, self.accept):
            row.addWidget(button)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self.table.cellClicked.connect(self._clicked)

    def show_items(self, items: list[ReviewItem], total: int, current) -> None:
        """List ``items`` (review order); ``total`` open pairs; ``current`` (frame, obj) or None."""
        self.table.setRowCount(0)
        for it in items:
            r = self.table.rowCount()
            self.table.insertRow(r)
            tip = why(it)
            for c, text in enumerate((str(it.frame), str(it.obj_id), f"{it.score:.2f}")):
                cell = QTableWidgetItem(text)
                cell.setData(Qt.UserRole, (it.frame, it.obj_id))
                cell.setToolTip(tip)
                cell.setTextAlignment(Qt.AlignCenter)
                self.table.setItem(r, c, cell)
            if current == it.key:
                self.table.selectRow(r)
        shown = f" (first {len(items)} listed)" if total > len(items) else ""
        self.status.setText(f"{total} masks to review{shown}" if total else "Nothing to review")

    def _clicked(self, row: int, col: int) -> None:
        frame, obj = self.table.item(row, 0).data(Qt.UserRole)
        self.chosen.emit(int(frame), int(obj))


class ReviewNavigator:
    """The session's review queue, fed by propagation and walked from the panel or the keys.

    ``go_to(frame, obj)`` moves the viewer and selects the object (the widget's
    doing); ``on_visit(frame, obj)`` is told each jump (effort statistics);
    ``on_count(n)`` each time the number of open pairs is shown.
    """

    def __init__(
        self,
        viewer,
        controller: Sam2Controller,
        layers: LayerSet,
        panel: ReviewPanel,
        go_to: Callable[[int, int], None],
        on_visit: Callable[[int, int], None] | None = None,
        on_count: Callable[[int], None] | None = None,
    ) -> None:
        self._viewer = viewer
        self._controller = controller
        self._layers = layers
        self._panel = panel
        self._go_to = go_to
        self._on_visit = on_visit
        self._on_count = on_count
        self._session_id: str | None = None
        self.review = SessionReview()
        panel.next.clicked.connect(self.next)
        panel.previous.clicked.connect(self.previous)
        panel.accept.clicked.connect(self.accept)
        panel.chosen.connect(self.show_pair)
        # Frames arrive many per second: the table is rebuilt once they pause.
        self._timer = QTimer(panel)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        viewer.bind_key(NEXT_KEY, self._next_key, overwrite=True)
        viewer.bind_key(PREVIOUS_KEY, self._previous_key, overwrite=True)

    def detach(self) -> None:
        """Stop answering the viewer's keys (the widget closes)."""
        for key in (NEXT_KEY, PREVIOUS_KEY):
            self._viewer.bind_key(key, None, overwrite=True)

    # -- fed by the widget ----------------------------------------------------

    def run_started(self, passes) -> None:
        self._same_session()
        self.review.run_started(passes)

    def result(self, result, reverse: bool) -> None:
        """A propagated frame was written: score it; the list follows shortly."""
        self._same_session()
        self.review.observe(result, reverse)
        if not self._timer.isActive():
            self._timer.start()

    def prompts_synced(self, prompts: dict) -> None:
        """Prompted (frame, object) pairs are the user's own answer: they leave the queue."""
        self._same_session()
        before = len(self.review)
        self.review.prompted(prompts.keys())
        if len(self.review) != before:
            self.refresh()

    def object_removed(self, obj: int) -> None:
        self.review.remove_object(obj)
        self.refresh()

    def restored(self, review: SessionReview | None, session_id: str | None) -> None:
        """A loaded session's saved queue (or an empty one)."""
        self.review = review or SessionReview()
        self._session_id = session_id
        self.refresh()

    def to_dict(self) -> dict:
        """What is saved as ``review.json``."""
        return self.review.to_dict()

    # -- walking --------------------------------------------------------------

    def items(self) -> list[ReviewItem]:
        """The open (frame, object) pairs in review order (each object's worst first)."""
        return self.review.items()

    def next(self) -> ReviewItem | None:
        """Go to the next suspicious (frame, object); None (and no move) past the end."""
        return self._show(self.review.next())

    def previous(self) -> ReviewItem | None:
        """Go back one pair; None before the first."""
        return self._show(self.review.previous())

    def accept(self) -> None:
        """The current pair's mask is fine: out of the queue, then on to the next."""
        item = self.review.current
        if item is not None:
            self.review.accept(item.frame, item.obj_id)
            self.next()
        self.refresh()

    def show_pair(self, frame: int, obj: int) -> None:
        """Go to a listed pair (a clicked row); the cursor moves there."""
        item = self.review.move_to(frame, obj)
        if item is not None:
            self._show(item)

    def refresh(self) -> None:
        """List the queue now."""
        self._timer.stop()
        current = self.review.current
        self._panel.show_items(
            self.review.items(ROWS), len(self.review), None if current is None else current.key
        )
        if self._on_count is not None:
            self._on_count(len(self.review))

    # -- internals ------------------------------------------------------------

    def _next_key(self, viewer) -> None:
        self.next()

    def _previous_key(self, viewer) -> None:
        self.previous()

    def _show(self, item: ReviewItem | None) -> ReviewItem | None:
        if item is not None:
            self._go_to(item.frame, item.obj_id)
            if self._on_visit is not None:
                self._on_visit(item.frame, item.obj_id)
        self.refresh()
        return item

    def _same_session(self) -> None:
        """Another session (a new image): its queue starts empty."""
        if self._session_id != self._controller.session_id:
            self.review.clear()
            self._session_id = self._controller.session_id
