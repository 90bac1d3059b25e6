"""Helpers to build the reference implementation (sam2==1.1.0) for parity tests.

Importing this module fails loudly when the reference is missing: parity tests
must run, never skip, in CI.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore", category=UserWarning, module="hydra")
warnings.filterwarnings("ignore", category=FutureWarning, module="hydra")

import sam2  # noqa: E402,F401  (initialises hydra's config module)
from sam2.build_sam import build_sam2, build_sam2_video_predictor  # noqa: E402

CONFIGS = {
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "sam2_hiera_tiny": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_small": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_base_plus": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_large": "configs/sam2/sam2_hiera_l.yaml",
}


def reference_model(variant: str, image_size: int = 1024, video: bool = False, seed: int = 0):
    """The reference model with its default random init (eval mode, CPU)."""
    torch.manual_seed(seed)
    overrides = [f"++model.image_size={image_size}"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if video:
            # The reference skips hole filling without its CUDA extension; so do we here.
            overrides.append("++model.fill_hole_area=0")
            model = build_sam2_video_predictor(
                CONFIGS[variant], None, device="cpu", hydra_overrides_extra=overrides
            )
            model.fill_hole_area = 0
        else:
            model = build_sam2(
                CONFIGS[variant], None, device="cpu", hydra_overrides_extra=overrides
            )
    return model


def save_checkpoint(model, path: Path) -> Path:
    torch.save({"model": model.state_dict()}, path)
    return path


def image_predictor(model):
    """The reference SAM2ImagePredictor, told the feature sizes of its image size."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    pred = SAM2ImagePredictor(model)
    s = model.image_size
    pred._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
    return pred
