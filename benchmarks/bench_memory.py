"""Peak resident memory against video length, napari-sam2 and the reference side by side.

Each (engine, length) runs in a fresh subprocess, so its peak RSS is its own.
napari-sam2 reads frames lazily; the reference loads the whole video first (its
design), so its input is counted as it would be in real use.

    python benchmarks/bench_memory.py --lengths 100 400 1000 --image-size 256
    python benchmarks/bench_memory.py --quick
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent


def run_one(engine: str, n_frames: int, image_size: int, variant: str) -> dict:
    """Propagate one object over n_frames in this process; report peak RSS."""
    sys.path.insert(0, str(HERE))
    import torch
    from _common import LazyFrames, Timer, click_points, peak_rss_mb, quiet_warnings

    quiet_warnings()
    torch.manual_seed(0)
    frames = LazyFrames(n_frames, image_size)
    click = click_points(1, image_size)
    with tempfile.TemporaryDirectory() as tmp, Timer() as timer:
        if engine == "napari-sam2":
            from napari_sam2 import VideoSession, build_model

            model = build_model(variant, image_size=image_size)
            base = peak_rss_mb()
            with VideoSession(model, frames) as session:
                session.add_points(0, 1, click, [1])
                for _ in session.propagate():
                    pass
        else:
            from _common import reference_and_ours
            from video_oracle import RefSession

            ref, _ = reference_and_ours(variant, image_size, Path(tmp))
            base = peak_rss_mb()
            import numpy as np

            session = RefSession(ref, np.asarray(frames))
            session.add_points(0, 1, click, [1])
            for _ in session.propagate():
                pass
    return {
        "engine": engine,
        "frames": n_frames,
        "peak_rss_mb": peak_rss_mb(),
        "model_rss_mb": base,
        "seconds": timer.seconds,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[100, 400, 1000])
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--variant", default="sam2.1_hiera_tiny")
    p.add_argument("--engines", nargs="+", default=["napari-sam2", "reference"])
    p.add_argument("--quick", action="store_true", help="short videos at 128 px")
    p.add_argument("--json", default=str(HERE / "results" / "memory.json"))
    p.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        print(
            json.dumps(run_one(args._child[0], int(args._child[1]), args.image_size, args.variant))
        )
        return 0
    if args.quick:
        args.lengths, args.image_size = [20, 80], 128

    rows = []
    for engine in args.engines:
        for n in args.lengths:
            cmd = [sys.executable, __file__, "--_child", engine, str(n)]
            cmd += ["--image-size", str(args.image_size), "--variant", args.variant]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(
                f"{engine:12s} {n:5d} frames: peak RSS {rows[-1]['peak_rss_mb']:8.0f} MiB "
                f"({rows[-1]['seconds']:.0f} s)",
                flush=True,
            )

    print(f"\nPeak RSS growth, {args.variant} at {args.image_size} px, 1 object")
    print(f"{'engine':12s} " + " ".join(f"{n:>8d}" for n in args.lengths) + "   ratio last/first")
    summary = {}
    for engine in args.engines:
        peaks = [r["peak_rss_mb"] for r in rows if r["engine"] == engine]
        ratio = peaks[-1] / peaks[0]
        summary[engine] = ratio
        print(f"{engine:12s} " + " ".join(f"{v:8.0f}" for v in peaks) + f"   {ratio:.3f}")
    sys.path.insert(0, str(HERE))
    from _common import machine, write_json

    write_json(
        args.json,
        {
            "rows": rows,
            "ratio_last_first": summary,
            "image_size": args.image_size,
            "variant": args.variant,
            "machine": machine(),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
