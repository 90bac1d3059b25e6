"""Writing FrameResults into the labels layer (one part of the SAM 2 widget).

Only pixels that are background or belong to a tracked object change: ids the
user painted are never touched, nor are pixels painted with an object's id
before napari-sam2 first wrote that object. A whole propagation is one undo step.
"""

from __future__ import annotations

import numpy as np

from ..files.stacks import frame_index
from .controller import Sam2Controller, label_write, painted_pixels
from .layers import LayerSet


class LabelWriter:
    """Writes predictions into ``layers.labels``; groups writes into undo steps."""

    def __init__(self, layers: LayerSet, controller: Sam2Controller) -> None:
        self._layers = layers
        self._controller = controller
        self._history = None  # the labels layer's open undo block, during a propagation

    def write(self, result, tracked) -> None:
        """Write one frame's prediction; only the ``tracked`` ids (and background) change."""
        layers = self._layers
        if layers.labels is None:
            return
        ctrl = self._controller
        for obj in set(tracked) - ctrl.written:  # first write: the painted pixels stay the user's
            ctrl.painted[obj] = painted_pixels(layers.labels.data, obj, layers.axis)
            ctrl.written.add(obj)
        index = frame_index(layers.axis, result.frame)
        current = np.asarray(layers.labels.data[index])
        keep = ctrl.kept_pixels(result.frame)
        change = label_write(
            current, result.label_image(), tracked, layers.axis, result.frame, keep
        )
        if change is not None:
            layers.labels.data_setitem(*change)

    def open_step(self) -> None:
        """Start one undo step (closes a step left open)."""
        self.close_step()
        if self._layers.labels is not None:
            self._history = self._layers.labels.block_history()
            self._history.__enter__()

    def close_step(self) -> None:
        if self._history is not None:
            history, self._history = self._history, None
            history.__exit__(None, None, None)

    def remove_object(self, obj: int, results) -> None:
        """Write an object's last results and clear its pixels everywhere (one undo step)."""
        labels = self._layers.labels
        if labels is None:
            return
        with labels.block_history():
            for result in results:
                self.write(result, result.predicted_ids() | {obj})
            where = np.nonzero(np.asarray(labels.data) == obj)
            if where[0].size:
                labels.data_setitem(where, 0)
