"""Fit the review queue's suspicion weights to true errors on held-out synthetic clips.

For each clip (seeds from --seed; keep them apart from the seeds the review loop is
reported on) the simulated annotator of napari_sam2.review.loop clicks each
cell's first frame and tracks the clip; every unprompted (frame, object) pair then
has its signals and its true IoU (napari_sam2.review.loop.first_pass_signals).
A grid search over the weights (each in --grid) picks those whose top --budget
pairs per clip carry the most error (mean 1 - IoU), which is what a reviewer with
that budget gets to correct. Prints the fitted weights next to the current
defaults, each signal alone, uniform frames, and the oracle (the true worst pairs).

    python benchmarks/fit_suspicion.py --model sam2_micro_cells --image-size 256 \\
        --seed 940000 --clips 4 --json fit.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from napari_sam2 import VideoSession, load_model
from napari_sam2.evaluation.synthetic import make_timelapse
from napari_sam2.review.loop import LoopConfig, first_pass_signals, uniform_frames
from napari_sam2.review.score import SuspicionWeights, risks

SIGNALS = [f.name for f in fields(SuspicionWeights) if f.name != "move_scale"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="sam2_micro_cells")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=940_000, help="first clip's seed (held out)")
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--cells", type=int, default=12)
    p.add_argument("--snr", type=float, default=2.0)
    p.add_argument("--budget", type=float, default=0.10)
    p.add_argument("--good-iou", type=float, default=0.9, help="a pair below this IoU is bad")
    p.add_argument("--grid", default="0,0.5,1", help="weight values tried for each signal")
    p.add_argument("--json", metavar="OUT")
    return p.parse_args(argv)


def collect(model, args) -> list[dict]:
    """Per clip: the risk matrix (pairs x signals, NaN where missing), true IoU, frames."""
    clips = []
    for seed in range(args.seed, args.seed + args.clips):
        data = make_timelapse(args.frames, (args.size, args.size), args.cells, args.snr, seed)
        with VideoSession(model, data.image, spill=False) as session:
            pairs = first_pass_signals(session, data.labels, LoopConfig(budget=args.budget))
        risk = np.full((len(pairs), len(SIGNALS)), np.nan)
        for i, (sig, _) in enumerate(pairs):
            for name, r in risks(sig).items():
                risk[i, SIGNALS.index(name)] = r
        clips.append(
            {
                "seed": seed,
                "risk": risk,
                "iou": np.array([iou for _, iou in pairs]),
                "frame": np.array([sig.frame for sig, _ in pairs]),
                "k": max(1, math.ceil(args.budget * len(pairs))),
            }
        )
        print(
            f"seed {seed}: {len(pairs)} pairs, mean IoU {clips[-1]['iou'].mean():.3f}",
            file=sys.stderr,
        )
    return clips


def suspicion(risk: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The noisy-OR of napari_sam2.review.score, vectorised; missing signals are no risk."""
    return 1.0 - np.prod(1.0 - w * np.nan_to_num(risk, nan=0.0), axis=1)


def caught(clips, score_fn) -> float:
    """Mean error (1 - IoU) of each clip's top-k pairs by ``score_fn(clip)``, averaged over clips."""
    out = []
    for c in clips:
        order = np.lexsort((c["frame"], -score_fn(c)))  # worst first, ties: earlier frame
        out.append(float(np.mean(1.0 - c["iou"][order[: c["k"]]])))
    return float(np.mean(out))


def uniform_caught(clips, n_frames: int) -> float:
    out = []
    for c in clips:
        rank = {t: i for i, t in enumerate(uniform_frames(n_frames))}
        order = np.argsort([rank[t] for t in c["frame"]], kind="stable")
        out.append(float(np.mean(1.0 - c["iou"][order[: c["k"]]])))
    return float(np.mean(out))


def listing_threshold(clips, w: np.ndarray, good_iou: float) -> tuple[float, float]:
    """The score threshold whose listed pairs best match the bad ones (IoU < good_iou), by F1."""
    score = np.concatenate([suspicion(c["risk"], w) for c in clips])
    bad = np.concatenate([c["iou"] < good_iou for c in clips])
    best = (1.0, 0.0)
    for t in np.round(np.arange(0.05, 1.0, 0.05), 2):
        listed = score >= t
        tp = int((listed & bad).sum())
        f1 = 2 * tp / max(1, int(listed.sum()) + int(bad.sum()))
        if f1 > best[1]:
            best = (float(t), f1)
    return best


def main(argv=None) -> dict:
    args = parse_args(argv)
    model = load_model(args.model, image_size=args.image_size)
    clips = collect(model, args)
    grid = [float(v) for v in args.grid.split(",")]
    default = np.array([getattr(SuspicionWeights(), n) for n in SIGNALS])
    best, best_w = -1.0, default
    for combo in itertools.product(grid, repeat=len(SIGNALS)):
        w = np.array(combo)
        if not w.any():
            continue
        v = caught(clips, lambda c, w=w: suspicion(c["risk"], w))
        if v > best + 1e-12:
            best, best_w = v, w
    rows = {
        "fitted": best,
        "default weights": caught(clips, lambda c: suspicion(c["risk"], default)),
        "uniform frames": uniform_caught(clips, args.frames),
        "oracle": caught(clips, lambda c: 1.0 - c["iou"]),
        "mean over all pairs": float(np.mean([np.mean(1.0 - c["iou"]) for c in clips])),
    }
    for i, name in enumerate(SIGNALS):
        rows[f"{name} alone"] = caught(clips, lambda c, i=i: np.nan_to_num(c["risk"][:, i]))
    fitted = SuspicionWeights(**dict(zip(SIGNALS, best_w.tolist(), strict=True)))
    threshold, f1 = listing_threshold(clips, best_w, args.good_iou)
    print(
        f"list pairs scoring >= {threshold:.2f}: F1 {f1:.3f} for finding IoU < {args.good_iou}",
        file=sys.stderr,
    )
    print("| ranking | mean error (1 - IoU) of the top pairs |\n|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v:.3f} |")
    print("fitted weights:", json.dumps(asdict(fitted)))
    payload = {
        "args": vars(args),
        "caught": rows,
        "weights": asdict(fitted),
        "min_score": threshold,
        "min_score_f1": f1,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return payload


if __name__ == "__main__":
    main()
