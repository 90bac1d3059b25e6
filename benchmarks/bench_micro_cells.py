"""Quality and speed of a trained model on held-out synthetic clips, next to a classical baseline.

Held-out clips use seeds from 900000 up (training draws seeds below 800000). For each
SNR preset: a centre click on every cell of the first frame and forward propagation,
scored by DAVIS J&F over those cells; the baseline on the same clips is a per-frame
Otsu threshold, keeping for each cell the connected component that overlaps its
previous mask the most (started from the ground truth of the first frame, the same
information the click gives the model, and more).

Speed (1 object, 256 x 256 frames): click-to-mask on an encoded frame, and
propagation frames per second, medians over repeats.

    python benchmarks/bench_micro_cells.py --model sam2_micro_cells [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy import ndimage
from skimage.filters import threshold_otsu

from napari_sam2 import VideoSession, load_model
from napari_sam2.evaluation.synthetic import SNR_PRESETS, make_timelapse
from napari_sam2.training.validation import click_and_track, first_frame_objects, scored_jf

SEED0 = 900_000


def otsu_overlap_track(frames: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Classical baseline: per-frame Otsu, each cell follows its best-overlapping component."""
    objs = first_frame_objects(labels)
    out = np.zeros(labels.shape, np.int32)
    prev = {o: labels[0] == o for o in objs}
    for t in range(len(frames)):
        img = ndimage.gaussian_filter(frames[t].astype(np.float32), 1.0)
        comp, _ = ndimage.label(img > threshold_otsu(img))
        for o in objs:
            if t == 0:
                mask = prev[o]
            else:
                hits = comp[prev[o]]
                hits = hits[hits > 0]
                if len(hits) == 0:
                    mask = np.zeros_like(prev[o])
                else:
                    mask = comp == np.bincount(hits).argmax()
            out[t][mask & (out[t] == 0)] = o
            if mask.any():
                prev[o] = mask
    return out


def quality(model, n_clips: int, n_frames: int, n_cells: int, seed0: int = SEED0) -> dict:
    rows = {}
    for snr in SNR_PRESETS:
        model_jf, base_jf = [], []
        for i in range(n_clips):
            tl = make_timelapse(n_frames=n_frames, n_cells=n_cells, snr=snr, seed=seed0 + i)
            model_jf.append(scored_jf(click_and_track(model, tl.image, tl.labels), tl.labels))
            base_jf.append(scored_jf(otsu_overlap_track(tl.image, tl.labels), tl.labels))
        rows[f"snr{snr:g}"] = {
            "model_jf": float(np.mean(model_jf)),
            "otsu_jf": float(np.mean(base_jf)),
        }
    return rows


def speed(model, repeats: int) -> dict:
    tl = make_timelapse(n_frames=repeats + 2, n_cells=10, snr=4.0, seed=SEED0 + 999)
    obj = first_frame_objects(tl.labels)[0]
    point = np.argwhere(tl.labels[0] == obj).mean(0)
    clicks, steps = [], []
    with VideoSession(model, tl.image, spill=False) as s:
        s.add_points(0, 1, [tuple(point)], [1])  # encodes frame 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            s.add_points(0, 1, [tuple(point)], [1])
            clicks.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in s.propagate(0):
            steps.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
    per_frame = float(np.median(steps[1:]))
    return {"click_ms": 1000 * float(np.median(clicks)), "propagate_fps": 1.0 / per_frame}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sam2_micro_cells")
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--cells", type=int, default=12)
    p.add_argument(
        "--seed0",
        type=int,
        default=SEED0,
        help="first held-out seed (>= 900000; training draws below 800000)",
    )
    p.add_argument("--quick", action="store_true", help="1 clip of 6 frames, few repeats")
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.seed0 < 900_000:
        p.error("--seed0: held-out seeds start at 900000 (training draws below 800000)")
    if args.quick:
        args.clips, args.frames = 1, 6
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load_model(args.model)
    result = {
        "model": args.model,
        "clips": args.clips,
        "frames": args.frames,
        "cells": args.cells,
        "seed0": args.seed0,
        "threads": torch.get_num_threads(),
        "quality": quality(model, args.clips, args.frames, args.cells, args.seed0),
        "speed": speed(model, 5 if args.quick else 30),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
