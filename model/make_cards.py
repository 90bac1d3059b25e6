"""Write one model card per released SAM 2 variant into this folder.

Parameters are counted on the model as built by napari-sam2; FLOPs are counted
by torch's FlopCounterMode on meta tensors (no weights, no compute), at 1024 px:
the image encoder per frame, and the per-object tracking step once the memory
bank is full (6 previous frames + 1 conditioning frame, 16 pointers).

    python model/make_cards.py
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from napari_sam2.modeling.config import VARIANTS, get_config
from napari_sam2.modeling.image_encoder import ImageFeatures
from napari_sam2.modeling.sam2 import MemoryContext, Sam2Model
from napari_sam2.weights.registry import REGISTRY

HERE = Path(__file__).parent


def count(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def measure(name: str) -> dict:
    cfg = get_config(name)
    with torch.device("meta"):
        model = Sam2Model(cfg).eval()
    params = sum(p.numel() for p in model.parameters())
    trunk = sum(p.numel() for p in model.image_encoder.parameters())
    s, c, m = cfg.image_size, cfg.d_model, cfg.mem_dim
    g = cfg.embedding_size
    image = torch.empty(1, 3, s, s, device="meta")
    with torch.inference_mode():
        enc = count(lambda: model.encode_image(image))
        feats = ImageFeatures(
            fpn=[
                torch.empty(1, c // 8, 4 * g, 4 * g, device="meta"),
                torch.empty(1, c // 4, 2 * g, 2 * g, device="meta"),
                torch.empty(1, c, g, g, device="meta"),
            ],
            pos=[torch.empty(1, c, g, g, device="meta")] * 3,
        )
        ctx = MemoryContext(
            spatial=[(t, torch.empty(1, m, g, g, device="meta")) for t in range(cfg.num_maskmem)],
            pointers=[(d, torch.empty(1, c, device="meta")) for d in range(1, 17)],
            num_frames=100,
        )
        step = count(lambda: model.track_step(feats, 1, ctx, run_memory=True))
    return {"params": params, "encoder_params": trunk, "encoder_flops": enc, "step_flops": step}


CARD = """# {name}

| | |
|---|---|
| family | {family} |
| Hiera trunk | width {width}, stages {stages}, heads {heads}, global attention in blocks {glob} |
| parameters | {params:,} (image encoder {encoder_params:,}) |
| image encoder, per frame at 1024 px | {enc:.0f} GFLOP |
| tracking step, per object per frame (full memory bank) | {step:.0f} GFLOP |
| checkpoint | `{url}` ({size}) |
| sha256 | `{sha}` |
| licence | {licence} |
| source | Ravi et al., "SAM 2: Segment Anything in Images and Videos", 2024; weights by Meta AI |

Load it with `napari_sam2.load_model("{name}")` (downloaded once into the cache) or
`load_model("/path/to/{name}.pt")`. The variant is recognised from the checkpoint's
tensors. FLOPs count one multiply-add as 2 FLOPs (torch's FlopCounterMode, made by
`model/make_cards.py`).
"""


def main() -> None:
    for name, cfg in VARIANTS.items():
        r = measure(name)
        entry = REGISTRY.get(name)
        t = cfg.trunk
        text = CARD.format(
            name=name,
            family="SAM 2.1 (2024-09)" if cfg.is_sam21 else "SAM 2 (2024-07)",
            width=t.embed_dim,
            stages=list(t.stages),
            heads=t.num_heads,
            glob=list(t.global_att_blocks),
            params=r["params"],
            encoder_params=r["encoder_params"],
            enc=r["encoder_flops"] / 1e9,
            step=r["step_flops"] / 1e9,
            url=getattr(entry, "url", "?"),
            size=f"{entry.size:,} bytes" if entry and entry.size else "size unknown",
            sha=getattr(entry, "sha256", None) or "unknown",
            licence=getattr(entry, "licence", "Apache-2.0"),
        )
        (HERE / f"{name}.md").write_text(text)
        print(name, r)


if __name__ == "__main__":
    main()
