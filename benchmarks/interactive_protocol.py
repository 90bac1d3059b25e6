"""The SAM 2 paper's interactive protocols on a synthetic time-lapse: a J&F table.

Generates a seeded synthetic time-lapse (napari_sam2.evaluation.synthetic.make_timelapse),
runs the offline and online interactive protocols and semi-supervised VOS
(mask, box, 1/3/5 clicks) with napari_sam2.evaluation.interactive, prints one row per
step and optionally writes everything as JSON.

    # real weights (downloaded once, or a .pt path):
    python benchmarks/interactive_protocol.py --checkpoint sam2.1_hiera_tiny.pt
    # smoke run, random weights (scores are meaningless, the pipeline is not):
    python benchmarks/interactive_protocol.py --image-size 256 --frames 6 --size 96 --cells 3

See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from napari_sam2 import build_model, load_model
from napari_sam2.evaluation.interactive import object_ids, run_offline, run_online, run_vos
from napari_sam2.evaluation.synthetic import make_timelapse

PROTOCOLS = ("offline", "online", "vos")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    model = p.add_mutually_exclusive_group()
    model.add_argument("--checkpoint", help="weights: a .pt path or a registry name")
    model.add_argument(
        "--variant", default="sam2.1_hiera_tiny", help="random-init variant (no --checkpoint)"
    )
    p.add_argument("--image-size", type=int, default=1024, help="model input size (1024: native)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--frames", type=int, default=20, help="time-lapse length T")
    p.add_argument("--size", type=int, default=128, help="frame height and width, pixels")
    p.add_argument("--cells", type=int, default=4, help="cells in the first frame")
    p.add_argument("--snr", type=float, default=4.0, help="signal-to-noise ratio")
    p.add_argument("--seed", type=int, default=0, help="data seed (and random-init seed)")
    p.add_argument("--max-frames-prompted", type=int, default=8, help="offline passes at most")
    p.add_argument(
        "--protocols", default=",".join(PROTOCOLS), help="comma list of offline, online, vos"
    )
    p.add_argument(
        "--vos-prompts", default="mask,box,1,3,5", help="comma list: mask, box, or click counts"
    )
    p.add_argument("--json", metavar="OUT", help="write the results here as JSON")
    args = p.parse_args(argv)
    args.protocols = [x for x in args.protocols.split(",") if x]
    unknown = set(args.protocols) - set(PROTOCOLS)
    if unknown:
        p.error(f"--protocols: unknown {sorted(unknown)}")
    args.vos_prompts = [x for x in args.vos_prompts.split(",") if x]
    bad = [x for x in args.vos_prompts if x not in ("mask", "box") and not x.isdigit()]
    if bad:
        p.error(f"--vos-prompts: expected mask, box or click counts, got {bad}")
    return args


def make_model(args):
    if args.checkpoint:
        return load_model(args.checkpoint, device=args.device, image_size=args.image_size)
    torch.manual_seed(args.seed)  # random init, reproducible
    return build_model(args.variant, image_size=args.image_size, device=args.device)


def runs(args):
    """(name, callable(model, frames, gt) -> ProtocolResult) for each protocol asked for."""
    out = []
    if "offline" in args.protocols:
        out.append(
            lambda m, x, y: run_offline(m, x, y, max_frames_prompted=args.max_frames_prompted)
        )
    if "online" in args.protocols:
        out.append(run_online)
    if "vos" in args.protocols:
        for kind in args.vos_prompts:
            if kind.isdigit():
                out.append(lambda m, x, y, n=int(kind): run_vos(m, x, y, "clicks", n))
            else:
                out.append(lambda m, x, y, k=kind: run_vos(m, x, y, k))
    return out


def table(results: list[dict]) -> str:
    lines = [f"{'protocol':<14}{'frames':>7}{'clicks':>8}{'J':>8}{'F':>8}{'J&F':>8}{'s':>8}"]
    for r in results:
        for i, s in enumerate(r["steps"]):
            secs = f"{r['seconds']:8.1f}" if i == len(r["steps"]) - 1 else ""
            lines.append(
                f"{r['protocol']:<14}{s['prompted_frames']:>7}{s['clicks']:>8}"
                f"{s['J']:>8.3f}{s['F']:>8.3f}{s['JF']:>8.3f}{secs}"
            )
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    data = make_timelapse(args.frames, (args.size, args.size), args.cells, args.snr, args.seed)
    model = make_model(args)
    results = []
    for run in runs(args):
        t0 = time.perf_counter()
        result = run(model, data.image, data.labels).as_dict()
        result["seconds"] = time.perf_counter() - t0
        results.append(result)
    payload = {
        "model": {
            "checkpoint": args.checkpoint,
            "variant": model.cfg.name,
            "random_init": args.checkpoint is None,
            "image_size": args.image_size,
            "device": str(model.device),
        },
        "data": {
            "frames": args.frames,
            "size": args.size,
            "cells": args.cells,
            "snr": args.snr,
            "seed": args.seed,
            "objects": len(object_ids(data.labels)),
        },
        "machine": {"python": platform.python_version(), "torch": torch.__version__},
        "results": results,
    }
    if args.checkpoint is None:
        print("random-init weights: the scores below are meaningless", file=sys.stderr)
    print(table(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return payload


if __name__ == "__main__":
    main()
