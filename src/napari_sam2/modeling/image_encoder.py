"""The image encoder: Hiera trunk plus a feature-pyramid neck.

Output: three 256-channel maps at strides 4, 8 and 16 (the stride-32 level is
computed, used top-down, and dropped), each with its sine position encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import HieraConfig
from .hiera import Hiera
from .position_encoding import SineGridCache


@dataclass
class ImageFeatures:
    """Encoder output for a batch of B images.

    ``fpn``: [(B, 256, S/4, S/4), (B, 256, S/8, S/8), (B, 256, S/16, S/16)];
    ``pos``: the matching (B, 256, h, w) sine encodings.
    """

    fpn: list[torch.Tensor]
    pos: list[torch.Tensor]


class FpnNeck(nn.Module):
    """1x1 lateral convolutions; only the two coarsest levels get top-down fusion."""

    top_down_levels = (2, 3)

    def __init__(self, in_dims: tuple[int, ...], d_model: int = 256) -> None:
        super().__init__()
        # convs[0] reads the coarsest (last) trunk stage.
        self.convs = nn.ModuleList(_Lateral(dim, d_model) for dim in reversed(in_dims))
        self.pos = SineGridCache(d_model)

    def forward(self, feats: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        n = len(feats)
        outs: list[torch.Tensor] = [None] * n  # type: ignore[list-item]
        prev = None
        for level in reversed(range(n)):
            lateral = self.convs[n - 1 - level](feats[level])
            if prev is not None and level in self.top_down_levels:
                up = F.interpolate(prev.float(), scale_factor=2.0, mode="nearest")
                lateral = lateral + up
            outs[level] = prev = lateral
        pos = []
        for x in outs:
            grid = self.pos(x.shape[-2], x.shape[-1], x.device).to(x.dtype)
            pos.append(grid.expand(x.shape[0], -1, -1, -1))
        return outs, pos


class _Lateral(nn.Module):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ImageEncoder(nn.Module):
    def __init__(self, cfg: HieraConfig, d_model: int = 256) -> None:
        super().__init__()
        self.trunk = Hiera(cfg)
        self.neck = FpnNeck(cfg.stage_dims, d_model)

    def forward(self, image: torch.Tensor) -> ImageFeatures:
        """(B, 3, S, S) normalised image -> features at strides 4, 8, 16."""
        fpn, pos = self.neck(self.trunk(image))
        return ImageFeatures(fpn=fpn[:-1], pos=pos[:-1])
