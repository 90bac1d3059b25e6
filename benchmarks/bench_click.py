"""One click, one cell: how good is a model's first-frame mask, and is the right mask of three picked?

On held-out synthetic frames (seeds from --seed0, >= 900000), a centre click on every
cell; for each SNR, mean IoU with the ground truth of: the mask the predicted IoU picks
among the three multimask outputs (what a click gives), the best of the three (an
oracle: what a perfect IoU head would give), the single-mask output, and the largest
of the three; and the IoU head's mean absolute error. Tracking starts from this mask,
so it bounds what propagation can reach.

    python benchmarks/bench_click.py --model sam2_micro_cells [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from napari_sam2 import load_model
from napari_sam2.engine.predictor import ImagePredictor
from napari_sam2.evaluation.metrics import jaccard
from napari_sam2.evaluation.synthetic import SNR_PRESETS, make_timelapse
from napari_sam2.training.validation import centre_click, first_frame_objects


def click_quality(model, snr: float, seeds, n_cells: int) -> dict:
    predictor = ImagePredictor(model)
    rows = []
    for seed in seeds:
        tl = make_timelapse(n_frames=1, n_cells=n_cells, snr=snr, seed=seed)
        predictor.set_image(tl.image[0])
        for obj in first_frame_objects(tl.labels):
            gt = tl.labels[0] == obj
            point = [centre_click(gt)]
            masks, scores, _ = predictor.predict(points=point, labels=[1])
            single, _, _ = predictor.predict(points=point, labels=[1], multimask=False)
            ious = np.array([jaccard(m, gt) for m in masks])
            rows.append(
                (
                    ious[int(np.argmax(scores))],
                    ious.max(),
                    jaccard(single[0], gt),
                    ious[int(np.argmax([m.sum() for m in masks]))],
                    float(np.abs(np.asarray(scores) - ious).mean()),
                )
            )
    mean = np.mean(rows, axis=0)
    keys = ("picked", "best_of_three", "single", "largest", "iou_head_abs_error")
    return {k: float(v) for k, v in zip(keys, mean, strict=True)} | {"cells": len(rows)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sam2_micro_cells")
    p.add_argument("--seed0", type=int, default=930_000, help="first held-out seed (>= 900000)")
    p.add_argument("--frames", type=int, default=4, help="held-out frames per SNR")
    p.add_argument("--cells", type=int, default=12)
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.seed0 < 900_000:
        p.error("--seed0: held-out seeds start at 900000 (training draws below 800000)")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load_model(args.model)
    seeds = range(args.seed0, args.seed0 + args.frames)
    result = {
        "model": args.model,
        "seeds": [seeds.start, seeds.stop - 1],
        "by_snr": {f"snr{s:g}": click_quality(model, s, seeds, args.cells) for s in SNR_PRESETS},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
