"""The SAM 2 dock widget in a real napari viewer (pytest-qt + make_napari_viewer).

A tiny sample (5 frames of 64 x 64) and a random-init sam2.1_hiera_tiny at
image_size 256 keep the file fast on a CPU. Random weights would judge every
object absent, so the checkpoint's object-score bias is raised: masks are then
random but non-empty, which is all the wiring tests need.

napari's canvas needs OpenGL: without an X display, Xvfb is started for this
module when installed (``apt-get install xvfb``); otherwise the module is
skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest

from napari_sam2.errors import InputError


def _ensure_display() -> str | None:
    """Start a private Xvfb when there is no display; None if one is available."""
    if os.environ.get("DISPLAY"):
        return None
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        return "napari's canvas needs an X display or Xvfb (apt-get install xvfb)"
    read, write = os.pipe()
    args = ["-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"]
    proc = subprocess.Popen(
        [xvfb, *args],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as fh:
        number = fh.readline().strip()
    if not number:
        proc.kill()
        return "Xvfb did not start"
    # Killing it at exit would pull the display from under Qt (a fatal X error,
    # exit status 1); a detached watcher stops it once this process is gone,
    # however it ends (a crash or a timeout included).
    watch = f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 2; done; kill {proc.pid}"
    subprocess.Popen(["sh", "-c", watch], start_new_session=True)
    os.environ["DISPLAY"] = f":{number}"
    return None


_skip = _ensure_display()
if _skip is not None and os.environ.get("CI"):
    # CI installs Xvfb (.ci/run): there the widget tests must run, never skip.
    raise RuntimeError(f"widget tests cannot run in CI: {_skip}")
pytestmark = pytest.mark.skipif(_skip is not None, reason=_skip or "")

N_FRAMES, SHAPE = 5, (64, 64)
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """Random-init tiny model at 256 px whose objects are always 'present'."""
    import torch

    from napari_sam2 import build_model

    torch.manual_seed(0)
    model = build_model("sam2.1_hiera_tiny", image_size=256)
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[2].bias.fill_(20.0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny_random.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture
def errors(monkeypatch):
    """Messages the widget showed with napari's show_error."""
    import napari.utils.notifications as notifications

    shown: list[str] = []
    monkeypatch.setattr(notifications, "show_error", lambda msg: shown.append(str(msg)))
    return shown


@pytest.fixture
def make_widget(make_napari_viewer, checkpoint, tmp_path, monkeypatch, errors):
    """-> (viewer, widget) with the sample open and the model loaded."""
    from napari_sam2._qt.widget import Sam2Widget

    monkeypatch.setenv("NAPARI_SAM2_CACHE", str(tmp_path / "cache"))
    made = []

    def make(sample: str = "timelapse", load: bool = True, **kwargs):
        viewer = make_napari_viewer()
        if sample == "timelapse":
            viewer.open_sample("napari-sam2", "timelapse", n_frames=N_FRAMES, shape=SHAPE, **kwargs)
        elif sample == "zstack":
            viewer.open_sample("napari-sam2", "zstack", n_slices=N_FRAMES, shape=SHAPE, **kwargs)
        widget = Sam2Widget(viewer)
        viewer.window.add_dock_widget(widget, name="SAM 2 segmentation")
        made.append(widget)
        if load:
            widget.load_model(checkpoint, device="cpu", image_size=256)
            assert widget.controller.model is not None, errors
        return viewer, widget

    yield make
    for widget in made:
        if not _deleted(widget):
            widget.shutdown()


def _deleted(widget) -> bool:
    """True once Qt has deleted the widget (its viewer was closed)."""
    try:
        widget.objectName()
    except RuntimeError:
        return True
    return False


def _two_objects(widget, frame: int = 2) -> None:
    """A positive and a negative click for objects 1 and 2 on ``frame``."""
    widget.add_point(frame, 20, 20, positive=True, obj_id=1)
    widget.add_point(frame, 5, 5, positive=False, obj_id=1)
    widget.add_point(frame, 45, 45, positive=True, obj_id=2)
    widget.add_point(frame, 60, 5, positive=False, obj_id=2)


def _labelled(labels) -> list[bool]:
    return [bool(np.any(labels[t])) for t in range(labels.shape[0])]


# --------------------------------------------------------------------------- tests


def test_sample_opens_and_prompt_layers_appear(make_widget):
    viewer, widget = make_widget(load=False)
    image = viewer.layers["cells (time-lapse)"]
    assert image.data.dtype == np.uint16 and image.data.shape == (N_FRAMES, *SHAPE)
    names = [layer.name for layer in viewer.layers]
    for suffix in ("points", "boxes", "labels"):
        assert f"cells (time-lapse) SAM2 {suffix}" in names
    assert widget.labels.data.shape == image.data.shape
    assert widget.data_panel.kind.currentText() == "time-lapse"
    assert viewer.layers.selection.active is widget.points and widget.points.mode == "add"
    # bfloat16 is offered only where the device computes it natively.
    from napari_sam2.engine.precision import bf16_possible

    bf16 = widget.model_panel.precision.model().item(1)
    assert bf16.isEnabled() == bf16_possible("cpu") and "AVX-512 BF16" in bf16.toolTip()
    # Closing the dock shuts the widget down; a new widget adopts the same layers.
    layers = (widget.points, widget.boxes, widget.labels)
    viewer.window.remove_dock_widget(widget)
    assert widget._closed
    from napari_sam2._qt.widget import Sam2Widget

    again = Sam2Widget(viewer)
    viewer.window.add_dock_widget(again)
    assert (again.points, again.boxes, again.labels) == layers
    assert len(viewer.layers) == 4
    again.shutdown()


def test_clicks_preview_two_objects_on_their_frame(make_widget):
    viewer, widget = make_widget()
    _two_objects(widget)
    labels = widget.labels.data
    assert set(np.unique(labels[2])) >= {1, 2}
    assert _labelled(labels) == [False, False, True, False, False]
    feats = widget.points.features
    assert feats["label"].tolist() == [1, 0, 1, 0]
    assert feats["object"].tolist() == [1, 1, 2, 2]
    assert sorted(widget.controller.objects) == [1, 2]
    assert widget.objects_panel.table.rowCount() == 2
    # The objects panel shows each object's label colour.
    colour = widget.objects_panel.table.item(1, 0).background().color()
    expected = widget.labels.colormap.map(2).ravel()[:3]
    assert np.allclose([colour.redF(), colour.greenF(), colour.blueF()], expected, atol=0.01)
    # Points are drawn in their object's colour.
    assert np.allclose(widget.points.face_color[2][:3], expected, atol=0.01)


def test_interactive_click_with_shift_is_negative(make_widget, qtbot):
    viewer, widget = make_widget()
    widget.select_object(3)
    event = type("E", (), {"modifiers": ["Shift"], "button": 1})()
    widget.prompts.points_pressed(widget.points, event)  # what napari calls on mouse press
    widget.points.add([1, 30, 30])
    qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=TIMEOUT_MS)
    assert widget.points.features.iloc[-1].tolist() == [0, 3]
    widget.prompts.toggle_negative()
    assert widget.prompt_panel.negative.isChecked()


def test_propagate_both_ways_then_correct_and_undo(make_widget, qtbot):
    viewer, widget = make_widget()
    _two_objects(widget)
    before = np.array(widget.labels.data)
    widget.propagate("both", wait=False)
    qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=TIMEOUT_MS)
    after = np.array(widget.labels.data)
    assert _labelled(after) == [True] * N_FRAMES
    assert widget.propagate_panel.status.text().startswith("Done")
    assert widget.controller.session_folder is not None  # autosaved
    assert (widget.controller.session_folder / "labels.tif").is_file()

    # A correction on a tracked frame re-propagates forward from it.
    passes = []
    real = widget.controller.propagate

    def spy(plan):
        passes.extend(plan)
        yield from real(plan)

    widget.controller.propagate = spy
    widget.add_point(3, 30, 40, positive=False, obj_id=1)
    assert [(p.start, p.reverse) for p in passes] == [(3, False)]
    assert _labelled(widget.labels.data) == [True] * N_FRAMES

    # Undo: the correction's frames, then its preview, then the whole propagation.
    widget.labels.undo()
    widget.labels.undo()
    np.testing.assert_array_equal(widget.labels.data, after)
    widget.labels.undo()
    np.testing.assert_array_equal(widget.labels.data, before)
    widget.labels.redo()
    np.testing.assert_array_equal(widget.labels.data, after)


def test_widget_cli_and_segment_plan_the_same_passes(
    make_widget, checkpoint, tmp_path, monkeypatch
):
    """For the same prompts, the three callers run the same engine passes in every direction."""
    import napari_sam2.cli.app as cli
    from napari_sam2.engine.session import VideoSession
    from napari_sam2.files.prompt_files import PointRow, write_points_csv

    calls = []
    real = VideoSession.propagate

    def spy(self, start_frame=None, reverse=False, max_frames=None):
        calls.append((start_frame, reverse, max_frames))
        return real(self, start_frame, reverse, max_frames)

    monkeypatch.setattr(VideoSession, "propagate", spy)
    viewer, widget = make_widget()
    clicks = [(1, 20.0, 20.0, 1), (3, 45.0, 45.0, 2)]  # (frame, row, col, object)
    for frame, row, col, obj in clicks:
        widget.add_point(frame, row, col, positive=True, obj_id=obj)
    image = np.asarray(viewer.layers["cells (time-lapse)"].data)
    import tifffile

    tifffile.imwrite(tmp_path / "img.tif", image, photometric="minisblack")
    write_points_csv(tmp_path / "points.csv", [PointRow(f, r, c, 1, o) for f, r, c, o in clicks])
    monkeypatch.setattr(cli, "_load_model", lambda *a, **k: widget.controller.model)
    planned = {}
    for direction in ("forward", "backward", "both"):
        runs = []
        calls.clear()
        widget.propagate(direction)
        runs.append(list(calls))
        calls.clear()
        with VideoSession(widget.controller.model, image) as session:
            for frame, row, col, obj in clicks:
                session.add_points(frame, obj, [(row, col)], [1])
            session.segment(direction)
        runs.append(list(calls))
        calls.clear()
        out = tmp_path / f"{direction}.tif"
        argv = ["segment", str(tmp_path / "img.tif"), "--prompts", str(tmp_path / "points.csv")]
        argv += ["--model", "x.pt", "--out", str(out), "--direction", direction, "--quiet"]
        assert cli.main([*argv, "--image-size", "256", "--device", "cpu"]) == 0
        runs.append(list(calls))
        assert runs[0] == runs[1] == runs[2], (direction, runs)
        planned[direction] = runs[0]
    assert planned == {
        "forward": [(1, False, 4)],
        "backward": [(3, True, 4)],
        "both": [(1, False, 4), (1, True, 2)],  # backward from the earliest prompt
    }


def test_painted_labels_of_other_ids_survive(make_widget, tmp_path):
    viewer, widget = make_widget()
    painted = np.zeros((N_FRAMES, *SHAPE), bool)
    painted[:, 10:20, 30:50] = True
    widget.labels.data[painted] = 9  # the user's own label, never an object
    widget.labels.refresh()
    _two_objects(widget)
    widget.propagate("both")
    labels = widget.labels.data
    assert np.all(labels[painted] == 9)
    assert _labelled(np.where(labels == 9, 0, labels)) == [True] * N_FRAMES
    # The plugin's writer saves the labels layer as a TIFF.
    import napari
    import tifffile

    (written,) = napari.save_layers(
        str(tmp_path / "cells.tif"), [widget.labels], plugin="napari-sam2"
    )
    np.testing.assert_array_equal(tifffile.imread(written), labels)


def test_cancel_stops_within_one_frame(make_widget, qtbot):
    viewer, widget = make_widget()
    widget.add_point(0, 20, 20, obj_id=1)
    widget.propagate("forward", wait=False)
    qtbot.waitUntil(
        lambda: widget.propagation.eta is not None and widget.propagation.eta.done >= 2,
        timeout=TIMEOUT_MS,
    )
    at_cancel = widget.propagation.eta.done
    assert widget.propagate_panel.cancel.isEnabled()
    assert "left" in widget.propagate_panel.status.text()  # the ETA
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=TIMEOUT_MS)
    assert widget.propagation.eta.done <= at_cancel + 1
    written = _labelled(widget.labels.data)
    assert written[:at_cancel] == [True] * at_cancel  # frames already written stay
    assert written[at_cancel + 1 :] == [False] * (N_FRAMES - at_cancel - 1)
    assert widget.propagate_panel.status.text().startswith("Cancelled")


def test_save_close_and_load_session(make_widget, tmp_path, errors):
    viewer, widget = make_widget()
    _two_objects(widget)
    widget.add_box(1, 10, 10, 40, 40, obj_id=2)
    widget.labels.data[0, 50:60, 50:60] = 3  # painted, then sent as a mask prompt
    widget.use_painted_mask(frame=0, obj_id=3)
    widget.rename_object(1, "mother cell")
    widget.propagate("both")
    folder = widget.save_session(tmp_path / "run1")
    for name in ("points.csv", "boxes.csv", "mask_prompts.tif", "labels.tif", "session.json"):
        assert (folder / name).is_file()
    labels = np.array(widget.labels.data)
    points = np.array(widget.points.data)
    features = widget.points.features.copy()
    boxes = [np.array(b) for b in widget.boxes.data]
    widget.shutdown()
    viewer.close()

    viewer2, widget2 = make_widget(load=False)
    widget2.load_session(folder)
    assert not errors, errors
    np.testing.assert_array_equal(widget2.labels.data, labels)
    np.testing.assert_allclose(widget2.points.data, points)
    assert widget2.points.features[["label", "object"]].values.tolist() == (
        features[["label", "object"]].values.tolist()
    )
    assert len(widget2.boxes.data) == 1
    np.testing.assert_allclose(np.sort(widget2.boxes.data[0], 0), np.sort(boxes[0], 0))
    assert widget2.controller.objects[1] == "mother cell"
    assert sorted(widget2.controller.masks) == [(0, 3)]
    assert widget2.controller.model is not None  # the session's model was loaded
    # A click for object 1 on the last frame: object 2 has no prediction there in
    # the reloaded session, so its saved pixels stay.
    widget2.add_point(4, 30, 30, positive=False, obj_id=1)
    np.testing.assert_array_equal(widget2.labels.data[4] == 2, labels[4] == 2)
    # The restored session can be propagated again, and saving goes back to its folder.
    widget2.propagate("forward")
    assert _labelled(widget2.labels.data) == [True] * N_FRAMES
    assert widget2.controller.session_folder == folder
    # Another session's folder is never overwritten without asking.
    widget2.controller.session_id = "a-new-session"
    with pytest.raises(Exception, match="another session"):
        widget2.save_session(folder)


def test_box_mask_prompt_and_object_removal(make_widget):
    viewer, widget = make_widget()
    widget.add_box(1, 5, 5, 30, 30, obj_id=1)
    assert np.any(widget.labels.data[1] == 1)
    # Paint object 3 by hand on frame 3, then send it as a mask prompt.
    widget.labels.data[3, 40:55, 40:55] = 3
    widget.use_painted_mask(frame=3, obj_id=3)
    assert np.any(widget.labels.data[3] == 3)
    assert (3, 3) in widget.controller.masks and 3 in widget.controller.objects
    widget.propagate("both")
    assert np.any(widget.labels.data == 3)
    snapshot = np.array(widget.labels.data)
    widget.remove_object(3)
    assert not np.any(widget.labels.data == 3)
    assert 3 not in widget.controller.objects and 3 not in widget.controller.session.obj_ids
    widget.labels.undo()  # the removal is one undo step
    np.testing.assert_array_equal(widget.labels.data, snapshot)


def test_zstack_dask_and_errors(make_widget, errors, tmp_path):
    import dask.array as da

    viewer, widget = make_widget(sample="zstack")
    assert widget.data_panel.kind.currentText() == "z-stack"
    widget.controller.session_folder = tmp_path / "zstack_session"  # as if saved
    assert widget.propagate_panel.direction.currentText() == "both"
    # The same stack as a lazy dask array: frames are read one at a time.
    image = viewer.layers["cells (z-stack)"]
    viewer.add_image(da.from_array(np.asarray(image.data), chunks=(1, 64, 64)), name="lazy")
    widget.data_panel.image.setCurrentText("lazy")
    widget.wait()
    assert widget.controller.session is not None
    assert widget.controller.stack.data is viewer.layers["lazy"].data
    assert widget.controller.session_folder is None  # a new image is a new session
    with pytest.raises(InputError, match="outside the frame"):
        widget.add_point(2, 500, 3, obj_id=1)
    widget.add_point(2, 30, 30, obj_id=1)
    widget.propagate()  # both ways from the prompted slice
    assert _labelled(widget.labels.data) == [True] * N_FRAMES
    # A broken checkpoint is a one-line notification, not a traceback.
    bad = tmp_path / "broken.pt"
    bad.write_text("not a checkpoint")
    widget.load_model(bad, device="cpu")
    assert errors and errors[-1].startswith("checkpoint:") and "\n" not in errors[-1]


def test_download_progress_is_shown(make_widget, checkpoint, monkeypatch, qtbot):
    """A registry name is resolved (downloaded) in the worker, with progress in the panel."""
    import napari_sam2.weights.registry as registry

    viewer, widget = make_widget(load=False)
    seen = []

    def fake_resolve(name, progress=None, **kwargs):
        assert name == "sam2.1_hiera_tiny"
        for done in (0, 50, 100):
            progress(done * 2**20, 100 * 2**20)
        return checkpoint

    monkeypatch.setattr(registry, "resolve_checkpoint", fake_resolve)
    widget._download.connect(lambda done, total: seen.append(widget.model_panel.status.text()))
    widget.load_model("sam2.1_hiera_tiny", device="cpu", image_size=256)
    assert seen and seen[-1] == "Downloading: 100 of 100 MiB"
    assert widget.model_panel.status.text().startswith("sam2.1_hiera_tiny on cpu")
    assert not widget.model_panel.progress.isVisible()
