"""The smaller things a new user ran into (issue 15, "Also seen").

Progress that counts each frame once, a movie refused as "labels", the
widget's model boxes telling the truth, an image-size control, a cancel that
says what it waits for, and axis names on the slider.
"""

# ruff: noqa: F811  (pytest fixtures imported from test_widget are parameters here)
from __future__ import annotations

import pytest
import tifffile
import torch
from qtpy.QtWidgets import QScrollArea
from test_widget import TIMEOUT_MS, _skip, checkpoint, errors, make_widget  # noqa: F401

import napari_sam2.cli.app as cli
from napari_sam2 import build_model
from napari_sam2.evaluation.synthetic import make_timelapse
from napari_sam2.files.prompt_files import PointRow, write_points_csv

needs_viewer = pytest.mark.skipif(_skip is not None, reason=_skip or "")


@pytest.fixture
def stack(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = build_model("sam2.1_hiera_tiny", image_size=256)
    monkeypatch.setattr(cli, "_load_model", lambda *args, **kwargs: model)
    tl = make_timelapse(n_frames=4, shape=(48, 48), n_cells=2, seed=0)
    tifffile.imwrite(tmp_path / "movie.tif", tl.image, photometric="minisblack")
    tifffile.imwrite(tmp_path / "gt.tif", tl.labels, photometric="minisblack")
    write_points_csv(tmp_path / "points.csv", [PointRow(1, 20, 20, 1, 1)])
    return tmp_path


def test_cli_progress_counts_each_frame_once(stack, capsys):
    code = cli.main(["segment", str(stack / "movie.tif"), "--prompts", str(stack / "points.csv"),
                     "--model", "m", "--out", str(stack / "labels.tif"), "--direction", "both"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    bars = [line for line in err.splitlines() if line.startswith("segment")]
    assert bars[-1].split("] ")[1].startswith("4/4 frames"), bars


def test_evaluate_refuses_a_movie_passed_as_labels(stack, capsys):
    code = cli.main(["evaluate", str(stack / "movie.tif"), str(stack / "gt.tif")])
    err = capsys.readouterr().err
    assert code == 2 and "intensity image" in err and "movie.tif" in err, err
    assert cli.main(["evaluate", str(stack / "gt.tif"), str(stack / "gt.tif")]) == 0


@needs_viewer
def test_widget_model_boxes_image_size_cancel_and_axis_names(make_widget, checkpoint, qtbot):
    from napari_sam2._qt.panels import LOCAL_FILE

    viewer, widget = make_widget(load=False)
    mp = widget.model_panel
    # An image-size control, its trade-off in the tooltip.
    assert mp.image_size.currentText() == "1024" and "faster" in mp.image_size.toolTip()
    # A failed load, then a good one: no stale error, and the boxes say what is loaded.
    widget.load_model(checkpoint.parent / "missing.pt", device="cpu")
    assert widget.last_error
    widget.load_model(checkpoint, device="cpu", image_size=256)
    assert widget.last_error is None
    assert mp.checkpoint.currentText() == LOCAL_FILE and mp.path.text() == str(checkpoint)
    assert mp.device.currentText() == "cpu" and mp.image_size.currentText() == "256"
    # The set-once sections folded: the dock fits a 1366 x 768 screen (about 650 px
    # are left for it under napari's title, menu and the dock's own title).
    assert mp.isHidden() and widget.data_panel.isHidden()
    assert not widget.propagate_panel.isHidden() and not widget.session_panel.isHidden()
    assert widget._inner.sizeHint().height() <= 650, widget._inner.sizeHint()
    # Opening the folded sections clips nothing on the right: the dock was sized for them.
    for key in ("automatic", "review"):
        widget._sections[key].toggleButton().click()
    bar = widget.findChild(QScrollArea).verticalScrollBar().sizeHint().width()
    assert widget._inner.minimumSizeHint().width() + bar <= widget.minimumWidth()
    for key in ("automatic", "review"):
        widget._sections[key].toggleButton().click()
    # The prompt layers carry the image's axis names: the slider reads "t".
    assert widget.points.axis_labels == ("t", "y", "x")
    assert viewer.dims.axis_labels[0] == "t"
    assert widget.data_panel.axis.itemText(0) == "0: t"
    # Cancel says that it waits for the frame being computed.
    widget.add_point(0, 20, 20, obj_id=1)
    widget.propagate("forward", wait=False)
    eta = lambda: widget.propagation.eta  # noqa: E731
    qtbot.waitUntil(lambda: eta() is not None and eta().done >= 1, timeout=TIMEOUT_MS)
    widget.cancel()
    assert widget.propagate_panel.status.text().startswith("Cancel")
    qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=TIMEOUT_MS)
    assert widget.propagate_panel.status.text().startswith("Cancelled")
