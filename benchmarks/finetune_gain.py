"""Does fine-tuning on corrected sessions of one condition help there, and cost little elsewhere?

The data engine's last step: a model is fine-tuned (napari_sam2.training.finetune,
what the widget's *Fine-tune on these sessions...* runs; image encoder frozen on a
CPU) on corrected sessions of one synthetic condition, here low SNR with dense
cells, each session a clip whose labels are fully corrected (the ground truth).
J&F (a centre click on every first-frame cell, forward tracking) is measured
before and after on held-out clips of that condition and of the default one.
Seeds: sessions from --seed, held-out clips from --seed + 10000 (never the same).

    python benchmarks/finetune_gain.py --model sam2_micro_cells --focal-alpha 0.5 \
        --focal-gamma 0 --snr 4 --cells 12 --speed-sd 4 --json gain.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_sam2 import load_model
from napari_sam2.evaluation.synthetic import MotionConfig, make_timelapse
from napari_sam2.training.data import Clip
from napari_sam2.training.finetune import FinetuneSettings, finetune
from napari_sam2.training.validation import click_and_track, scored_jf


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="sam2_micro_cells")
    p.add_argument("--seed", type=int, default=960_000, help="first session's seed (held out)")
    p.add_argument("--sessions", type=int, default=4, help="corrected sessions to train on")
    p.add_argument("--session-frames", type=int, default=20)
    p.add_argument("--clips", type=int, default=4, help="held-out clips per condition")
    p.add_argument("--frames", type=int, default=20, help="frames per held-out clip")
    p.add_argument("--snr", type=float, default=1.0, help="the condition's SNR")
    p.add_argument("--cells", type=int, default=20, help="the condition's cells per frame")
    p.add_argument(
        "--speed-sd",
        type=float,
        help="the condition's cell speed spread, px/frame (default: the synthetic default)",
    )
    p.add_argument("--default-snr", type=float, default=4.0)
    p.add_argument("--default-cells", type=int, default=12)
    p.add_argument("--steps", type=int, default=FinetuneSettings().steps, help="(the widget's)")
    p.add_argument("--lr", type=float, default=FinetuneSettings().lr, help="(the widget's)")
    p.add_argument("--focal-alpha", type=float, default=0.25, help="mask loss (the recipe's)")
    p.add_argument("--focal-gamma", type=float, default=2.0, help="0: cross-entropy")
    p.add_argument(
        "--train-image-encoder",
        action="store_true",
        help="train the image encoder too (frozen by default on a CPU, as in the widget)",
    )
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--json", metavar="OUT")
    return p.parse_args(argv)


def jf(model, snr: float, cells: int, seeds, frames: int, speed_sd=None) -> float:
    scores = []
    for seed in seeds:
        tl = make_timelapse(
            n_frames=frames, n_cells=cells, snr=snr, seed=seed, motion=_motion(speed_sd)
        )
        scores.append(scored_jf(click_and_track(model, tl.image, tl.labels), tl.labels))
    return float(np.mean(scores))


def _motion(speed_sd):
    """The synthetic motion model, with ``speed_sd`` if given."""
    return None if speed_sd is None else MotionConfig(speed_sd=speed_sd)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    held = range(args.seed + 10_000, args.seed + 10_000 + args.clips)
    conditions = {
        "condition": (args.snr, args.cells, args.speed_sd),
        "default": (args.default_snr, args.default_cells, None),
    }
    before = {k: jf(model, s, c, held, args.frames, v) for k, (s, c, v) in conditions.items()}
    print(f"before: {before}", file=sys.stderr)
    sessions = []
    for seed in range(args.seed, args.seed + args.sessions):
        tl = make_timelapse(
            n_frames=args.session_frames,
            n_cells=args.cells,
            snr=args.snr,
            seed=seed,
            motion=_motion(args.speed_sd),
        )
        sessions.append(Clip(tl.image, tl.labels))
    settings = FinetuneSettings(
        steps=args.steps,
        lr=args.lr,
        focal_alpha=args.focal_alpha,
        focal_gamma=args.focal_gamma,
        freeze_image_encoder=False if args.train_image_encoder else None,
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.process_time()
        wall = time.perf_counter()
        path = finetune(model, sessions, Path(tmp) / "ft.pt", settings)
        cpu, wall = time.process_time() - t0, time.perf_counter() - wall
        tuned = load_model(str(path))
    after = {k: jf(tuned, s, c, held, args.frames, v) for k, (s, c, v) in conditions.items()}
    payload = {
        "args": vars(args),
        "held_out_seeds": [held.start, held.stop - 1],
        "before": before,
        "after": after,
        "gain": {k: after[k] - before[k] for k in before},
        "finetune_cpu_seconds": round(cpu, 1),
        "finetune_wall_seconds": round(wall, 1),
        "threads": torch.get_num_threads(),
    }
    print("| held-out clips | before | after | change |\n|---|---|---|---|")
    for k, (s, c, v) in conditions.items():
        label = f"{k} (SNR {s:g}, {c} cells" + (f", speed sd {v:g} px/frame)" if v else ")")
        print(f"| {label} | {before[k]:.3f} | {after[k]:.3f} | {after[k] - before[k]:+.3f} |")
    print(f"fine-tuning: {args.steps} steps, {wall:.0f} s wall, {cpu:.0f} s CPU", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return payload


if __name__ == "__main__":
    main()
