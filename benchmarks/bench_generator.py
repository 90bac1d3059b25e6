"""Time one mask-generator pass: clicks on a grid against clicks on intensity peaks.

Both settings of ``napari_sam2.tracking.decisions.generator_for`` run on the same frames
in one process, alternated, and the ratio is printed (benchmarks/NOTES.md, section 10).

    python benchmarks/bench_generator.py --model sam2_micro_cells
    python benchmarks/bench_generator.py --model random --frames 2 --repeats 1   # mechanics
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from bench_tracking import load_model, make_clip  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sam2_micro_cells", help="name, path or 'random'")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=930000, help="easy tuning clip")
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    from napari_sam2.tracking import MaskGenerator
    from napari_sam2.tracking.decisions import generator_for

    model = load_model(args.model, args.image_size)
    image, _, _ = make_clip("easy", args.seed, args.frames, 256)
    generators = {k: MaskGenerator(model, generator_for(k)) for k in ("grid", "peaks")}
    times: dict[str, list[float]] = {k: [] for k in generators}
    found: dict[str, list[int]] = {k: [] for k in generators}
    for _ in range(args.repeats):
        for name, gen in generators.items():
            for frame in image:
                start = time.perf_counter()
                masks = gen.generate(frame)
                times[name].append(time.perf_counter() - start)
                found[name].append(len(masks))
    out = {k: float(np.median(v)) for k, v in times.items()}
    out["ratio_grid_over_peaks"] = out["grid"] / out["peaks"]
    out["masks_per_pass"] = {k: float(np.mean(v)) for k, v in found.items()}
    print(
        f"grid {out['grid']:.3f} s, peaks {out['peaks']:.3f} s per pass: "
        f"{out['ratio_grid_over_peaks']:.1f}x (masks per pass {out['masks_per_pass']})"
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
