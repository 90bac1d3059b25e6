"""Memory encoder: fuses a frame's features with its predicted mask into a memory."""

from __future__ import annotations

import torch
from torch import nn

from .common import LayerNorm2d
from .position_encoding import SineGridCache


class MaskDownSampler(nn.Module):
    """Four stride-2 3x3 convolutions (x4 channels each) then a 1x1 projection.

    (B, 1, S, S) mask -> (B, C, S/16, S/16).
    """

    def __init__(self, out_dim: int = 256, num_layers: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = 1
        for _ in range(num_layers):
            layers += [
                nn.Conv2d(ch, ch * 4, 3, stride=2, padding=1),
                LayerNorm2d(ch * 4),
                nn.GELU(),
            ]
            ch *= 4
        layers.append(nn.Conv2d(ch, out_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(mask)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7, channel norm, 4x MLP, layer scale, residual."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    def __init__(self, dim: int = 256, num_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    def __init__(self, in_dim: int = 256, out_dim: int = 64) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(in_dim)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(in_dim)
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1)
        self.pos = SineGridCache(out_dim)

    def forward(
        self, pix_feat: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """pix_feat (B, C, h, w) and mask (B, 1, 16h, 16w), already scaled for memory.

        Returns the memory (B, mem_dim, h, w) and its (1, mem_dim, h, w) sine encoding.
        """
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(mask)
        x = self.out_proj(self.fuser(x))
        pos = self.pos(x.shape[-2], x.shape[-1], x.device).to(x.dtype)[None]
        return x, pos
