"""Open napari on a stack with the SAM 2 dock widget (``napari-sam2 view``)."""

from __future__ import annotations

from collections.abc import Callable

import napari


def open_viewer(
    data, name: str, channel_axis: int | None, *, title: str, warn: Callable[[str], None]
) -> None:
    """Show ``data`` ((T, H, W) or (T, H, W, C)) in a new viewer with the widget; run napari.

    ``channel_axis``: the axis holding channels, or None. A widget that fails to
    start is reported through ``warn`` and the image is shown without it.
    """
    from ..errors import one_line

    viewer = napari.Viewer(title=title)
    rgb = channel_axis == 3 and data.shape[3] in (3, 4)
    axes = {"axis_labels": ("t", "y", "x")}  # time first: the slider says "t"
    if channel_axis is None or rgb:
        viewer.add_image(data, name=name, rgb=rgb, **axes)
    else:
        viewer.add_image(data, name=name, channel_axis=channel_axis, **axes)
    try:
        from .widget import Sam2Widget

        widget = Sam2Widget(viewer)
        viewer.window.add_dock_widget(widget, name="SAM 2 segmentation", area="right")
        # The bundled model needs no download: a click segments as soon as napari is up.
        from ..weights.registry import DEFAULT_MODEL, HAS_BUNDLED

        if HAS_BUNDLED:
            widget.load_model(DEFAULT_MODEL, wait=False)
    except Exception as exc:  # the image is still worth showing without the widget
        warn(f"the SAM 2 widget is unavailable ({one_line(exc)}); opening napari without it")
    napari.run()
