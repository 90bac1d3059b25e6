"""Does automatic tracking stay bounded? Peak RSS, disk and time against clip length.

Each run is a fresh process: N cells seeded as masks on frame 0 of a synthetic
clip, propagated over T frames by ``track_all`` into a memory-mapped label
file; detection, divisions and track ends are switched off so that exactly N
objects are tracked on every frame (``tracks``, the number of track ids the run
made, shows it). Reported per run: peak RSS (MB), bytes left in the session's
spill folder (none is used: tracking is forward only), seconds per frame and per
frame per object.

    python benchmarks/bench_tracking_scale.py --model sam2_micro_cells --cells 100 \\
        --lengths 50 100 200 --size 512 --image-size 256 --json scale.json
    python benchmarks/bench_tracking_scale.py --model random --cells 20 --lengths 10 20 40

With ``--model random`` (a random-init sam2.1_hiera_tiny whose object score
is forced positive) the masks are meaningless, but the work per object and
the memory use are those of a real run of that architecture.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def _model(name: str, image_size: int):
    import torch

    if name == "random":
        from napari_sam2 import build_model

        torch.manual_seed(0)
        model = build_model("sam2.1_hiera_tiny", image_size=image_size)
        with torch.no_grad():
            model.sam_mask_decoder.pred_obj_score_head.layers[2].bias.fill_(20.0)
        return model
    from napari_sam2.cli.app import _load_model

    return _load_model(name, "cpu", image_size, quiet=True)


def one_run(model_name: str, n_cells: int, n_frames: int, size: int, image_size: int) -> dict:
    """One measurement (call in a fresh process: peak RSS is per process)."""
    from dataclasses import replace

    from napari_sam2.evaluation.synthetic import make_timelapse
    from napari_sam2.tracking import TrackConfig, track_all

    clip = make_timelapse(n_frames, (size, size), n_cells=n_cells, seed=10500)
    ids = [i for i in np.unique(clip.labels[0]) if i][:n_cells]
    seeds = [clip.labels[0] == i for i in ids]
    model = _model(model_name, image_size)
    # No detection, no ends and no divisions, so the object count stays N: a mask
    # that leaks into a neighbour can fall into two components each as large as
    # the cell was (seen: 150 tracks from 100 cells in 50 frames), which the
    # split rule would take for a division. This measures the engine only.
    cfg = replace(
        TrackConfig(),
        detect_every=10**6,
        coverage_drop=1.0,
        shrink_ratio=0.0,
        end_after=10**6,
        divisions=False,
    )
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as tmp:
        out = np.lib.format.open_memmap(
            Path(tmp) / "labels.npy", "w+", np.int32, (n_frames, size, size)
        )
        # ``seed`` detection on frame 0 finds nothing new: the user masks cover the cells.
        start = time.perf_counter()
        times = []

        def tick(done, total):
            times.append(time.perf_counter())

        result = track_all(
            model, clip.image, cfg, masks=seeds, labels_out=out, progress=tick, spill_dir=tmp
        )
        seconds = time.perf_counter() - start
        disk = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
        disk -= out.nbytes  # the output itself
    steady = np.diff(times[1:]) if len(times) > 2 else np.array([seconds])
    return {
        "cells": len(seeds),
        "tracks": len(result.lineage),
        "frames": n_frames,
        "size": size,
        "image_size": image_size,
        "seconds": seconds,
        "s_per_frame": float(np.median(steady)),
        "s_per_frame_per_object": float(np.median(steady)) / max(1, len(seeds)),
        "rss_before_mb": rss0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "temp_disk_bytes": int(max(0, disk)),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="random")
    p.add_argument("--cells", type=int, default=20)
    p.add_argument("--lengths", type=int, nargs="+", default=[10, 20, 40])
    p.add_argument("--size", type=int, default=256, help="frame side, pixels")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--json", type=Path)
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        row = one_run(args.model, args.cells, args.lengths[0], args.size, args.image_size)
        print(json.dumps(row))
        return 0
    rows = []
    for n in args.lengths:
        cmd = [sys.executable, __file__, "--one", "--model", args.model, "--cells", str(args.cells)]
        cmd += ["--lengths", str(n), "--size", str(args.size), "--image-size", str(args.image_size)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"T={row['frames']:4d}  cells {row['cells']:3d}  tracks {row['tracks']:3d}  peak RSS {row['peak_rss_mb']:7.0f} MB  "
            f"temp disk {row['temp_disk_bytes']:6d} B  {row['s_per_frame']:.2f} s/frame  "
            f"{1000 * row['s_per_frame_per_object']:.0f} ms/frame/object",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
