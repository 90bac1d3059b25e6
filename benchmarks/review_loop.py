"""The review loop on held-out synthetic clips: guided vs uniform review at equal budget.

For each clip (a seeded napari_sam2.synthetic.make_timelapse) and each strategy
(guided by the review queue, uniform, and the ground-truth oracle as an upper
bound) a simulated annotator clicks each object's first frame, then inspects
--budget of all (frame, object) pairs in --rounds rounds and corrects those
below --good-iou (napari_sam2.review.loop). Prints one row per strategy, in
the SAM 2 paper's data-engine columns (edited frames %, clicks per clicked
frame) plus J&F before and after review, as means over the clips.

    # the bundled model (the real numbers):
    python benchmarks/review_loop.py --model sam2_micro_cells --image-size 256 --json out.json
    # mechanics only, random weights (the scores mean nothing):
    python benchmarks/review_loop.py --image-size 128 --clips 2 --frames 8 --size 64 --cells 3

Use seeds the model was not trained on (--seed, then consecutive seeds). See docs/review.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from napari_sam2 import build_model, load_model
from napari_sam2.evaluation.synthetic import make_timelapse
from napari_sam2.review.loop import STRATEGIES, LoopConfig, run_review_loop
from napari_sam2.review.score import SuspicionWeights


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="a registry name or .pt path (default: random weights)")
    p.add_argument("--variant", default="sam2.1_hiera_tiny", help="random-init variant")
    p.add_argument("--image-size", type=int, default=1024, help="model input size")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--clips", type=int, default=5, help="held-out clips (consecutive seeds)")
    p.add_argument(
        "--seed",
        type=int,
        default=900_100,
        help="first clip's seed (held out: training draws below 800000)",
    )
    p.add_argument("--frames", type=int, default=30, help="clip length T")
    p.add_argument("--size", type=int, default=128, help="frame height and width, pixels")
    p.add_argument("--cells", type=int, default=6, help="cells in the first frame")
    p.add_argument("--snr", type=float, default=4.0, help="signal-to-noise ratio")
    p.add_argument("--budget", type=float, default=0.10, help="share of (frame, object) pairs")
    p.add_argument("--rounds", type=int, default=2, help="review rounds (re-tracking between)")
    p.add_argument("--clicks", type=int, default=3, help="clicks per corrected frame at most")
    p.add_argument("--good-iou", type=float, default=0.9, help="IoU an inspection accepts")
    p.add_argument(
        "--clicks-only",
        action="store_true",
        help="never paint: a mask the clicks leave below --good-iou stays as it is",
    )
    p.add_argument("--strategies", default=",".join(STRATEGIES), help="comma list")
    p.add_argument(
        "--weights",
        type=json.loads,
        metavar="JSON",
        help="suspicion weights for the guided strategies, e.g. '{\"disagreement\": 1.0}'",
    )
    p.add_argument("--json", metavar="OUT", help="write every clip's results here as JSON")
    args = p.parse_args(argv)
    args.strategies = [s for s in args.strategies.split(",") if s]
    bad = set(args.strategies) - set(STRATEGIES)
    if bad:
        p.error(f"--strategies: unknown {sorted(bad)}")
    return args


def make_model(args):
    if args.model:
        return load_model(args.model, device=args.device, image_size=args.image_size)
    torch.manual_seed(0)
    return build_model(args.variant, image_size=args.image_size, device=args.device)


COLUMNS = (
    "edited frames %",
    "clicks/clicked frame",
    "inspected",
    "corrected",
    "J&F before",
    "J&F after",
)


def summary(results: list[dict], strategies) -> list[dict]:
    """Means over clips, one row per strategy."""
    rows = []
    for s in strategies:
        mine = [r for r in results if r["strategy"] == s]
        rows.append(
            {
                "strategy": s,
                "clips": len(mine),
                "edited_frames_pct": float(
                    np.mean([r["effort"]["edited_frames_pct"] for r in mine])
                ),
                "clicks_per_clicked_frame": float(
                    np.mean([r["effort"]["clicks_per_clicked_frame"] for r in mine])
                ),
                "inspected": float(np.mean([r["rounds"][-1]["inspected"] for r in mine])),
                "corrected": float(np.mean([r["rounds"][-1]["corrected"] for r in mine])),
                "initial_JF": float(np.mean([r["initial_JF"] for r in mine])),
                "final_JF": float(np.mean([r["final_JF"] for r in mine])),
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| strategy | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for r in rows:
        cells = [
            f"{r['edited_frames_pct']:.1f}",
            f"{r['clicks_per_clicked_frame']:.2f}",
            f"{r['inspected']:.1f}",
            f"{r['corrected']:.1f}",
            f"{r['initial_JF']:.3f}",
            f"{r['final_JF']:.3f}",
        ]
        lines.append(f"| {r['strategy']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None, model=None) -> dict:
    """Run the comparison; ``model``: an already loaded model instead of --model."""
    args = parse_args(argv)
    config = LoopConfig(args.budget, args.rounds, args.clicks, args.good_iou, not args.clicks_only)
    weights = SuspicionWeights(**args.weights) if args.weights else None
    if model is None:
        model = make_model(args)
    results = []
    for seed in range(args.seed, args.seed + args.clips):
        data = make_timelapse(args.frames, (args.size, args.size), args.cells, args.snr, seed)
        for strategy in args.strategies:
            t0 = time.perf_counter()
            loop = run_review_loop(model, data.image, data.labels, strategy, config, weights)
            r = loop.as_dict()
            r["seed"], r["seconds"] = seed, time.perf_counter() - t0
            results.append(r)
            print(
                f"seed {seed} {strategy:<8} J&F {r['initial_JF']:.3f} -> {r['final_JF']:.3f}"
                f"  ({r['seconds']:.0f} s)",
                file=sys.stderr,
            )
    rows = summary(results, args.strategies)
    payload = {
        "model": {
            "model": args.model,
            "variant": model.cfg.name,
            "random_init": args.model is None and model.cfg.name == args.variant,
            "image_size": args.image_size,
            "device": str(model.device),
        },
        "data": {
            "clips": args.clips,
            "seeds": [args.seed, args.seed + args.clips - 1],
            "frames": args.frames,
            "size": args.size,
            "cells": args.cells,
            "snr": args.snr,
        },
        "config": asdict(config),
        "weights": asdict(weights or SuspicionWeights()),
        "machine": {"python": platform.python_version(), "torch": torch.__version__},
        "summary": rows,
        "results": results,
    }
    if payload["model"]["random_init"]:
        print("random-init weights: the scores below are meaningless", file=sys.stderr)
    print(table(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return payload


if __name__ == "__main__":
    main()
