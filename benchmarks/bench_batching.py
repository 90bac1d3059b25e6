"""Objects prompted on different frames: one batch per memory layout, or one per prompt frame?

N objects are prompted with masks, object i on frame ``i % K`` (K distinct prompt
frames, as daughters and cells found later are in automatic tracking), then
tracked forward over T frames. The same session runs twice in one process: with
the engine's rule (:func:`napari_sam2.engine.session.batch_key`: pointer offsets
may differ within a batch) and with the earlier rule, which also required equal
pointer offsets, so objects prompted on different frames never shared a batch.
Reported: seconds per frame over the frames after the last prompt frame + the
model's memory window, the number of batches per frame, and the ratio.

    python benchmarks/bench_batching.py --model PATH --objects 40 --prompt-frames 8 --frames 40
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from napari_sam2.engine import session as session_mod
from napari_sam2.evaluation.synthetic import make_timelapse


def _old_key(ctx):
    return tuple(p for p, _ in ctx.spatial), tuple(int(o) for o, _ in ctx.pointers)


def run(model, clip, n_objects: int, k: int, key) -> tuple[float, float]:
    """(median seconds per steady frame, mean batches per steady frame)."""
    ids = [i for i in np.unique(clip.labels[0]) if i][:n_objects]
    calls = []
    original = session_mod.batch_key
    session_mod.batch_key = key
    track_step = type(model).track_step

    def counting(self, feats, n, *args, **kw):
        calls.append(n)
        return track_step(self, feats, n, *args, **kw)

    type(model).track_step = counting
    try:
        with session_mod.VideoSession(model, clip.image) as s:
            for j, obj in enumerate(ids):
                f = j % k
                s.add_mask(f, j + 1, clip.labels[f] == obj)
            steady = k + model.cfg.num_maskmem
            times, batches = [], []
            last = time.perf_counter()
            for r in s.propagate(start_frame=0):
                now = time.perf_counter()
                if r.frame >= steady:
                    times.append(now - last)
                    batches.append(len(calls))
                calls.clear()
                last = now
    finally:
        session_mod.batch_key = original
        type(model).track_step = track_step
    return float(np.median(times)), float(np.mean(batches))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="registry name or checkpoint path")
    p.add_argument("--objects", type=int, default=40)
    p.add_argument("--prompt-frames", type=int, default=8)
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2, help="runs of each rule, order alternating")
    p.add_argument(
        "--caps", type=int, nargs="*", default=[], help="also: per layout with these batch caps"
    )
    args = p.parse_args(argv)
    import torch

    from napari_sam2.cli.app import _load_model

    torch.set_num_threads(args.threads)
    model = _load_model(args.model, "cpu", None, quiet=True)
    clip = make_timelapse(
        args.frames, (args.size, args.size), n_cells=args.objects, division_rate=0.0, seed=10600
    )
    default_cap = session_mod.CPU_MAX_BATCH
    rules = {"per layout (now)": (session_mod.batch_key, default_cap)}
    rules["per prompt frame"] = (_old_key, default_cap)
    for cap in args.caps:
        rules[f"per layout, cap {cap}"] = (session_mod.batch_key, cap)
    rows: dict[str, list] = {name: [] for name in rules}
    for i in range(args.repeat):  # alternate the order, so drift hits all alike
        for name in list(rules)[:: 1 if i % 2 == 0 else -1]:
            key, cap = rules[name]
            session_mod.CPU_MAX_BATCH = cap
            try:
                sec, nb = run(model, clip, args.objects, args.prompt_frames, key)
            finally:
                session_mod.CPU_MAX_BATCH = default_cap
            rows[name].append(sec)
            print(f"{name:22s} {sec:.3f} s/frame  {nb:.1f} batches/frame", flush=True)
    medians = {n: float(np.median(v)) for n, v in rows.items()}
    for n, v in medians.items():
        print(f"median {n:22s} {v:.3f} s/frame")
    now, before = medians["per layout (now)"], medians["per prompt frame"]
    print(f"speed-up of batching per layout: {before / now:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
