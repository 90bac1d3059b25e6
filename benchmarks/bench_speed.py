"""Propagation speed and click-to-mask latency, napari-sam2 vs the reference, in one run.

Both engines get the same random-init weights, frames and clicks. Per frame we
split warm-up (memory bank still filling: the first num_maskmem frames after
the prompt) from steady state (bank full). The two engines are stepped one frame
each in turn; the steady ratio is the median of the per-frame ratios
napari-sam2 / reference.

    python benchmarks/bench_speed.py                      # tiny, 1024 px, 1 object
    python benchmarks/bench_speed.py --variants all --objects 1 3 10
    python benchmarks/bench_speed.py --quick              # < 2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import (  # noqa: E402
    HERE,
    LazyFrames,
    click_points,
    machine,
    quiet_warnings,
    reference_and_ours,
    write_json,
)

ALL = [
    "sam2.1_hiera_tiny",
    "sam2.1_hiera_small",
    "sam2.1_hiera_base_plus",
    "sam2.1_hiera_large",
]


def prompt(session, n_objects: int, size: int) -> None:
    for i, pt in enumerate(click_points(n_objects, size)):
        session.add_points(0, i + 1, [pt], [1])


def time_propagation(sessions: dict, n_objects: int, size: int, n_frames: int) -> dict:
    """Seconds per propagated frame for each engine, stepping the engines in turn.

    Alternating one frame of each engine exposes both to the same background load,
    so their ratio holds even when the machine's speed drifts during the run.
    Frame 0 (the prompted one) is excluded.
    """
    for session in sessions.values():
        prompt(session, n_objects, size)
    runs = {name: iter(session.propagate()) for name, session in sessions.items()}
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for k in range(n_frames):
        for name, run in runs.items():
            t0 = time.perf_counter()
            next(run)
            if k > 0:
                times[name].append(time.perf_counter() - t0)
    return times


def time_clicks(sessions: dict, size: int, repeats: int = 7) -> dict:
    """Median seconds of a click on frame 0 (features cached), engines in turn."""
    for session in sessions.values():
        session.add_points(0, 1, [click_points(1, size)[0]], [1])
    out: dict[str, list[float]] = {name: [] for name in sessions}
    for r in range(repeats):
        for name, session in sessions.items():
            t0 = time.perf_counter()
            session.add_points(0, 1, [(size * 0.5, size * (0.4 + 0.02 * r))], [1])
            out[name].append(time.perf_counter() - t0)
    return {name: float(np.median(v)) for name, v in out.items()}


def split(times: list[float], warm: int) -> tuple[float, float]:
    warm_t = times[:warm] or times
    steady = times[warm:] or times[-1:]
    return float(np.mean(warm_t)), float(np.median(steady))


def bench_variant(variant, args, tmp) -> list[dict]:
    from video_oracle import RefSession

    from napari_sam2 import VideoSession

    torch.manual_seed(0)
    ref_model, ours_model = reference_and_ours(variant, args.image_size, tmp, args.device)
    dense = np.asarray(LazyFrames(args.frames, args.image_size))
    warm = ours_model.cfg.num_maskmem

    def sessions():
        return {
            # The same in-memory frames for both: the timing is of the engines, not
            # of generating frames (bench_memory.py measures lazy reading).
            "ours": VideoSession(ours_model, dense, fill_hole_area=0, dtype=args.dtype),
            "ref": RefSession(ref_model, dense),
        }

    rows = []
    for n_obj in args.objects:
        result = {"variant": variant, "objects": n_obj, "image_size": args.image_size}
        with torch.inference_mode():
            times = time_propagation(sessions(), n_obj, args.image_size, args.frames)
            clicks = time_clicks(sessions(), args.image_size)
        for name in ("ours", "ref"):
            result[f"{name}_warmup_s"], result[f"{name}_steady_s"] = split(times[name], warm)
            result[f"{name}_click_s"] = clicks[name]
            result[f"{name}_frames_s"] = times[name]
        pairs = [a / b for a, b in zip(times["ours"][warm:], times["ref"][warm:])]
        result["steady_ratio"] = float(np.median(pairs)) if pairs else float("nan")
        result["click_ratio"] = result["ours_click_s"] / result["ref_click_s"]
        rows.append(result)
        print(
            f"{variant:24s} {n_obj:3d} obj  steady {result['ours_steady_s']:7.2f} s vs "
            f"{result['ref_steady_s']:7.2f} s  (x{result['steady_ratio']:.2f})  warm-up "
            f"{result['ours_warmup_s']:6.2f} vs {result['ref_warmup_s']:6.2f}  click "
            f"{1e3 * result['ours_click_s']:6.0f} vs {1e3 * result['ref_click_s']:6.0f} ms",
            flush=True,
        )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=["sam2.1_hiera_tiny"], help="names or 'all'")
    p.add_argument("--objects", type=int, nargs="+", default=[1])
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument(
        "--frames", type=int, default=12, help="frames to propagate (>= 8 for steady state)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--quick", action="store_true", help="tiny, 256 px, 9 frames, 1 object")
    p.add_argument("--json", default=str(HERE / "results" / "speed.json"))
    args = p.parse_args(argv)
    quiet_warnings()
    if args.quick:
        args.variants, args.objects, args.image_size, args.frames = (
            ["sam2.1_hiera_tiny"],
            [1],
            256,
            9,
        )
    if args.variants == ["all"]:
        args.variants = ALL
    from napari_sam2.errors import Sam2Error

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for variant in args.variants:
                rows += bench_variant(variant, args, Path(tmp))
        except Sam2Error as exc:  # e.g. --dtype bfloat16 on a CPU without bf16 units
            print(f"error: {exc}", file=sys.stderr)
            return 2
    write_json(args.json, {"rows": rows, "args": vars(args), "machine": machine()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
