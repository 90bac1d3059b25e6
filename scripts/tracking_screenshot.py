"""Screenshot of automatic-tracking output in a real napari window (docs/tracking.md).

Run under a virtual X server::

    xvfb-run -a python scripts/tracking_screenshot.py --model sam2_micro_cells
    xvfb-run -a python scripts/tracking_screenshot.py --method classical

The clip is a held-out easy-condition clip of the tracking benchmark (``--seed``,
default 920001). Layers: the image,
the track labels, and a Tracks layer built by
``napari_sam2.tracking.export.napari_tracks`` with the division graph (mother
to daughter links drawn as branching tails). ``--method classical`` takes the
tracks of the Otsu + watershed + laptrack baseline instead of SAM 2 (no model
needed); the Tracks builder and the layer are the same.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "benchmarks"))
sys.path.insert(0, str(HERE))

WINDOW = (1400, 900)


def tracks_of(method: str, model_name: str | None, image):
    from bench_tracking import load_model, run_method

    from napari_sam2.tracking import TrackConfig

    if method == "classical":
        return run_method("classical+laptrack", image, None, TrackConfig())
    model = load_model(model_name, 256)
    return run_method("sam2", image, model, TrackConfig())


def main() -> None:
    import napari
    from bench_tracking import make_clip
    from make_screenshots import save

    from napari_sam2.tracking import export

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint name or path (method sam2)")
    parser.add_argument("--method", choices=("sam2", "classical"), default="sam2")
    parser.add_argument("--frame", type=int, default=29)
    parser.add_argument("--seed", type=int, default=920001, help="easy-condition clip seed")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots/tracking_tracks.png"))
    args = parser.parse_args()
    if args.method == "sam2" and not args.model:
        parser.error("--model is needed with --method sam2")

    image, _, _ = make_clip("easy", args.seed)
    labels, lineage = tracks_of(args.method, args.model, image)
    data, graph = export.napari_tracks(labels, lineage)
    print(f"{len(lineage)} tracks, {len(graph)} daughters linked to mothers")

    viewer = napari.Viewer(title=f"napari-sam2: automatic tracking ({args.method})")
    viewer.window._qt_window.resize(*WINDOW)
    viewer.add_image(image, name="cells", colormap="gray")
    viewer.add_labels(labels, name="tracks (labels)", opacity=0.35)
    viewer.add_tracks(data, graph=graph, name="tracks", tail_length=30, tail_width=3)
    viewer.dims.set_current_step(0, int(np.clip(args.frame, 0, len(image) - 1)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save(viewer, args.out)
    viewer.close()


if __name__ == "__main__":
    main()
