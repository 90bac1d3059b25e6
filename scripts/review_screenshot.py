"""Screenshot of "Review and improve" in a real napari window (docs/user-guide.md).

Run under a virtual X server, with a trained checkpoint (no official weights can be
downloaded here; a random-init model would make the queue meaningless)::

    xvfb-run -a python scripts/review_screenshot.py --model CHECKPOINT.pt

It opens the sample time-lapse, clicks the centre of a few cells on frame 0 (one object
each), propagates forward, opens the folded "Review and improve" section and jumps to
the most suspicious (frame, object) pair, as a user pressing "Next" would.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

N_FRAMES, SHAPE, SEED = 20, (256, 256), 0
WINDOW = (1500, 1000)


def main() -> None:
    import napari
    from make_screenshots import save, settle, truth_labels

    from napari_sam2.training.validation import centre_click, first_frame_objects

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint path or registry name")
    parser.add_argument("--cells", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots/review_queue.png"))
    args = parser.parse_args()

    viewer = napari.Viewer(title="napari-sam2: review and improve")
    viewer.window._qt_window.resize(*WINDOW)
    viewer.open_sample("napari-sam2", "timelapse", n_frames=N_FRAMES, shape=SHAPE, seed=SEED)
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam2", "SAM 2 segmentation")
    widget.load_model(args.model, device="cpu")
    truth = truth_labels()
    for cell in first_frame_objects(truth)[: args.cells]:
        obj = widget.add_object()
        row, col = centre_click(truth[0] == cell)
        widget.add_point(0, row, col, obj_id=obj)
    widget.propagate("forward")
    section = widget._sections["review"]
    section.toggleButton().click()  # the user unfolds "Review and improve"
    settle(0.5)
    item = widget.review.next()  # "Next": the worst pair first
    if item is not None:
        print(f"worst: frame {item.frame}, object {item.obj_id}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save(viewer, args.out)
    widget.shutdown()
    viewer.close()


if __name__ == "__main__":
    main()
