"""Screenshots of the SAM 2 widget in a real napari window, for docs/user-guide.md.

Run under a virtual X server::

    xvfb-run -a python scripts/make_screenshots.py [--out docs/screenshots]

With a trained model (``--model sam2_micro_cells``, the bundled one, or a
checkpoint path), two cells are prompted as a user would: one click at each
cell's centre, then Propagate. Without one (``--model random``) the model is a
randomly initialised sam2.1_hiera_tiny whose clicks mean nothing, so the two
cells are prompted with painted masks ("Use painted mask") from the sample's
ground truth instead.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QWidget

N_FRAMES, SHAPE, SEED = 20, (256, 256), 0
WINDOW = (1500, 980)


def random_checkpoint(folder: Path) -> Path:
    """A random-init tiny checkpoint (see the module docstring)."""
    import torch

    from napari_sam2 import build_model

    torch.manual_seed(0)
    model = build_model("sam2.1_hiera_tiny", image_size=512)
    with torch.no_grad():
        model.sam_mask_decoder.pred_obj_score_head.layers[2].bias.fill_(20.0)
    path = folder / "sam2.1_hiera_tiny_random.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


def truth_labels():
    """The ground-truth labels of the sample (same seed, same cells)."""
    from napari_sam2.evaluation.synthetic import make_timelapse

    return make_timelapse(n_frames=N_FRAMES, shape=SHAPE, n_cells=12, snr=4.0, seed=SEED).labels


def settle(seconds: float = 0.3) -> None:
    """Let Qt lay out and paint."""
    import time

    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def hide_notifications(viewer) -> None:
    """Close napari's toast notifications, which would cover the canvas."""
    for toast in viewer.window._qt_window.findChildren(QWidget):
        if type(toast).__name__ == "NapariQtNotification":
            toast.close()


def save(viewer, path: Path) -> None:
    """A screenshot of the whole window as a compact palette PNG."""
    from PIL import Image

    settle()
    hide_notifications(viewer)
    settle(0.1)
    rgba = viewer.screenshot(canvas_only=False, flash=False)
    image = Image.fromarray(np.asarray(rgba)[..., :3])
    image = image.quantize(colors=192, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(path, optimize=True)
    print(f"{path}: {image.size[0]}x{image.size[1]}, {path.stat().st_size // 1024} KB")


def main() -> None:
    import napari

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument(
        "--model",
        help="registry name or .pt path, or 'random' (default: the bundled sam2_micro_cells "
        "where this installation carries it, else random)",
    )
    args = parser.parse_args()
    if args.model is None:
        from napari_sam2.weights import registry

        args.model = "sam2_micro_cells" if registry.HAS_BUNDLED else "random"
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="napari-sam2-shots-"))

    viewer = napari.Viewer(title="napari-sam2")
    viewer.window._qt_window.resize(*WINDOW)
    viewer.open_sample("napari-sam2", "timelapse", n_frames=N_FRAMES, shape=SHAPE, seed=SEED)
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam2", "SAM 2 segmentation")
    viewer.dims.set_current_step(0, 0)
    save(viewer, args.out / "01_sample_open.png")

    frame = 6
    viewer.dims.set_current_step(0, frame)
    truth = truth_labels()[frame]
    cells = [int(c) for c in np.unique(truth[truth > 0])][:2]
    if args.model == "random":
        widget.load_model(random_checkpoint(tmp), device="cpu", image_size=512)
        # Two cells, painted by hand in real use.
        for obj, cell in enumerate(cells, start=1):
            widget.labels.data[frame][truth == cell] = obj
            widget.use_painted_mask(frame=frame, obj_id=obj)
        widget.labels.refresh()
    else:
        widget.load_model(args.model, device="cpu")
        from napari_sam2.training.validation import centre_click

        for obj, cell in enumerate(cells, start=1):  # one click inside each cell
            row, col = centre_click(truth == cell)
            widget.add_point(frame, float(row), float(col), obj_id=obj)
    widget.rename_object(1, "cell A")
    widget.rename_object(2, "cell B")
    widget.select_object(1)
    save(viewer, args.out / "02_preview.png")

    shots = {"mid": False}

    def during(item) -> None:
        # Mid-propagation: the progress bar, ETA and Cancel button are live.
        if (
            widget.propagation.eta is not None
            and widget.propagation.eta.done == 8
            and not shots["mid"]
        ):
            shots["mid"] = True
            save(viewer, args.out / "03_propagating.png")

    widget.jobs.submit = _hook_yield(widget.jobs.submit, during)
    widget.propagate("both")
    if args.model != "random":
        viewer.dims.set_current_step(0, frame + 8)  # tracked, eight frames after the clicks
    save(viewer, args.out / "04_propagated.png")
    widget.shutdown()
    viewer.close()


def _hook_yield(submit, callback):
    """Wrap JobQueue.submit so that propagation results also reach ``callback``."""

    def wrapped(job):
        if job.on_yield is not None:
            inner = job.on_yield

            def on_yield(item):
                inner(item)
                callback(item)

            job.on_yield = on_yield
        return submit(job)

    return wrapped


if __name__ == "__main__":
    main()
