"""Hiera: the hierarchical vision transformer trunk of SAM 2's image encoder.

Tokens are kept as (B, H, W, C) maps. Each stage works at half the resolution
and twice the width of the previous one; the first block of a stage pools its
queries 2x2 (so the block still sees the previous stage's window), the rest
attend within non-overlapping windows, or globally in the listed blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP
from .config import HieraConfig


def to_windows(x: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * nWindows, size, size, C), zero-padding H and W up to `size`.

    Returns the windows and the padded (H, W). Padding tokens take part in
    attention as zeros (no masking), as in the released model.
    """
    b, h, w, c = x.shape
    ph, pw = -h % size, -w % size
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // size, size, wp // size, size, c).transpose(2, 3)
    return x.reshape(-1, size, size, c), (hp, wp)


def from_windows(
    windows: torch.Tensor, size: int, padded: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`to_windows`, cropping the padding away: -> (B, H, W, C)."""
    hp, wp = padded
    b = windows.shape[0] // ((hp // size) * (wp // size))
    x = windows.reshape(b, hp // size, wp // size, size, size, -1).transpose(2, 3)
    x = x.reshape(b, hp, wp, -1)
    return x[:, : hw[0], : hw[1]]


def pool2x2(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pooling of a (B, H, W, C) map (floors odd sizes)."""
    return F.max_pool2d(x.permute(0, 3, 1, 2), 2, 2).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention whose queries may be 2x2-pooled (stage changes)."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, pool_q: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.pool_q = pool_q
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H', W', C_out); H' = H/2 when pooling queries."""
        b, h, w, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).unbind(2)
        if self.pool_q:
            q = pool2x2(q.reshape(b, h, w, -1))
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        )
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block with windowed attention and optional downsampling."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, window: int, pool_q: bool) -> None:
        super().__init__()
        self.window = window
        self.pool_q = pool_q
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, pool_q)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, 4 * dim_out, dim_out, 2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.norm1(x)
        shortcut = x
        if hasattr(self, "proj"):
            # The residual path changes width too, so it follows the normed input.
            shortcut = self.proj(normed)
            if self.pool_q:
                shortcut = pool2x2(shortcut)

        if self.window > 0:
            windows, padded = to_windows(normed, self.window)
            out = self.attn(windows)
            size = self.window
            if self.pool_q:
                # Each window shrank with its queries; so did the padded grid.
                size = self.window // 2
                h, w = shortcut.shape[1:3]
                padded = (h + (-h % size), w + (-w % size))
            out = from_windows(out, size, padded, shortcut.shape[1:3])
        else:
            out = self.attn(normed)

        x = shortcut + out
        return x + self.mlp(self.norm2(x))


class Hiera(nn.Module):
    """The trunk: patch embedding, windowed position embedding and the blocks.

    ``forward`` maps an image (B, 3, S, S) to one feature map per stage,
    (B, C_i, S / 4 / 2**i, S / 4 / 2**i), highest resolution first.
    """

    def __init__(self, cfg: HieraConfig) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed(cfg.embed_dim)
        self.pos_embed = nn.Parameter(
            torch.zeros(1, cfg.embed_dim, *cfg.window_pos_embed_bkg_spatial_size)
        )
        self.pos_embed_window = nn.Parameter(
            torch.zeros(1, cfg.embed_dim, cfg.window_spec[0], cfg.window_spec[0])
        )
        ends = [sum(cfg.stages[: i + 1]) - 1 for i in range(len(cfg.stages))]
        pool_blocks = {end + 1 for end in ends[:-1][: cfg.q_pool]}
        self.stage_ends = ends

        self.blocks = nn.ModuleList()
        dim, heads, stage = cfg.embed_dim, cfg.num_heads, 0
        for i in range(cfg.depth):
            # A stage's first block still uses the previous stage's window size.
            window = 0 if i in cfg.global_att_blocks else cfg.window_spec[stage]
            dim_out = dim
            if i - 1 in ends:
                dim_out, heads, stage = dim * 2, heads * 2, stage + 1
            self.blocks.append(MultiScaleBlock(dim, dim_out, heads, window, i in pool_blocks))
            dim = dim_out

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """Background embedding resized bicubically, plus the tiled window embedding.

        Returns (1, h, w, C). The result depends only on the grid and the two
        parameters, so it is kept until either parameter changes (their version
        counters move on any in-place update, e.g. ``load_state_dict``).
        """
        params = (self.pos_embed, self.pos_embed_window)
        key = (h, w, *(p._version for p in params), *(p.data_ptr() for p in params))
        if torch.is_grad_enabled() or getattr(self, "_pos_key", None) != key:
            bkg = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
            win = self.pos_embed_window
            tiled = win.tile(1, 1, h // win.shape[2], w // win.shape[3])
            pos = (bkg + tiled).permute(0, 2, 3, 1)
            if torch.is_grad_enabled():
                return pos  # training: stay in the autograd graph, cache nothing
            self._pos, self._pos_key = pos, key
        return self._pos

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(image)
        x = x + self.position_embedding(*x.shape[1:3])
        outputs = []
        for i, block in enumerate(self.blocks):
            x = run_in_strips(block, x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs


STRIP_TOKENS = 4096  # tokens per strip: a block's intermediates then stay in the CPU cache


def run_in_strips(block: MultiScaleBlock, x: torch.Tensor) -> torch.Tensor:
    """Run a windowed block on horizontal strips of whole windows, one after another.

    Every step of a windowed block is per token or per window, so strips whose
    height is a multiple of the window give exactly the full-map result. On the
    large early maps this keeps the 4x-wide MLP activations, the attention
    inputs and the residual sums in cache instead of streaming them through
    memory (measured in benchmarks/NOTES.md). Global blocks and small maps run whole.
    """
    b, h, w, _ = x.shape
    if block.window == 0 or b * h * w < 2 * STRIP_TOKENS:
        return block(x)
    rows = max(1, STRIP_TOKENS // (b * w * block.window)) * block.window
    if rows >= h:
        return block(x)
    return torch.cat([block(x[:, r : r + rows]) for r in range(0, h, rows)], dim=1)


class _PatchEmbed(nn.Module):
    """7x7 stride-4 convolution: (B, 3, S, S) -> (B, S/4, S/4, C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)
