"""Export a trained sam2_micro_cells checkpoint into the package (float16, with provenance).

    python model/export_micro.py runs/micro_cells/stage2/model.pt

Writes src/napari_sam2/weights/bundled/sam2_micro_cells.pt atomically: the official
{"model": state_dict} format in float16 plus the architecture ("config") and where it
came from ("provenance"); load_model widens the weights to float32.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

TARGET = Path(__file__).parent.parent / "src/napari_sam2/weights/bundled/sam2_micro_cells.pt"
LIMIT = 20_000_000  # bytes: the project's budget for a committed model


def main(argv: list[str]) -> int:
    source = Path(argv[0])
    raw = torch.load(source, map_location="cpu", weights_only=True)
    sd = {k: v.half() if v.is_floating_point() else v for k, v in raw["model"].items()}
    provenance = dict(raw.get("provenance", {}))
    provenance.update(
        source=source.name,
        recipe="model/train_micro.sh",
        data="synthetic fluorescence time-lapses (napari_sam2.evaluation.synthetic), seeds < 800000",
    )
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    tmp = TARGET.with_name(TARGET.name + ".tmp")
    torch.save({"model": sd, "config": raw["config"], "provenance": provenance}, tmp)
    size = tmp.stat().st_size
    if size > LIMIT:
        tmp.unlink()
        print(f"export: {size} bytes is over the {LIMIT} byte budget", file=sys.stderr)
        return 1
    os.replace(tmp, TARGET)
    digest = hashlib.sha256(TARGET.read_bytes()).hexdigest()
    print(json.dumps({"path": str(TARGET), "bytes": size, "sha256": digest, **provenance}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
