"""Position encodings: 2D sine grids, random Fourier features, RoPE, 1D sine.

All functions are pure and cheap; callers cache grids that depend only on size.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _sine_frequencies(num_feats: int, temperature: float, device=None) -> torch.Tensor:
    # Paired channels (2i, 2i+1) share one frequency: one gets sin, the other cos.
    idx = torch.arange(num_feats, dtype=torch.float32, device=device)
    return temperature ** (2 * torch.div(idx, 2, rounding_mode="floor") / num_feats)


def sine_grid_encoding(
    channels: int, height: int, width: int, temperature: float = 10000.0, device=None
) -> torch.Tensor:
    """Normalised 2D sine encoding of an (height, width) grid.

    Returns (channels, height, width): the first half encodes the row, the second
    half the column. Positions run 1..n, normalised to (0, 2*pi].
    """
    half = channels // 2
    freqs = _sine_frequencies(half, temperature, device)
    eps = 1e-6
    rows = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    cols = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    rows = rows / (height + eps) * (2 * math.pi)
    cols = cols / (width + eps) * (2 * math.pi)

    def encode(pos: torch.Tensor) -> torch.Tensor:  # (n,) -> (n, half)
        angles = pos[:, None] / freqs
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    row_enc = encode(rows).T[:, :, None].expand(half, height, width)
    col_enc = encode(cols).T[:, None, :].expand(half, height, width)
    return torch.cat((row_enc, col_enc), dim=0).contiguous()


class SineGridCache:
    """Memoises :func:`sine_grid_encoding` per (height, width, device)."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self._cache: dict[tuple, torch.Tensor] = {}

    def __call__(self, height: int, width: int, device) -> torch.Tensor:
        # Tables made under inference mode cannot enter autograd (training), so
        # each mode keeps its own.
        key = (height, width, str(device), torch.is_inference_mode_enabled())
        if key not in self._cache:
            self._cache[key] = sine_grid_encoding(self.channels, height, width, device=device)
        return self._cache[key]


def sine_1d_encoding(positions: torch.Tensor, dim: int, temperature: float = 10000.0):
    """Transformer-style 1D sine encoding: (...) -> (..., dim), [sin | cos] halves."""
    half = dim // 2
    freqs = _sine_frequencies(half, temperature, positions.device)
    angles = positions[..., None] / freqs
    return torch.cat((angles.sin(), angles.cos()), dim=-1)


class RandomFourierEncoding(nn.Module):
    """Positional encoding with a fixed random Gaussian projection (SAM's prompt PE).

    The projection matrix ``positional_encoding_gaussian_matrix`` (2, C/2) is a
    buffer stored in the checkpoint.
    """

    def __init__(self, num_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_feats))

    def encode(self, xy01: torch.Tensor) -> torch.Tensor:
        """(..., 2) coordinates (x, y) in [0, 1] -> (..., C) features."""
        proj = (2 * xy01 - 1) @ self.positional_encoding_gaussian_matrix
        proj = 2 * math.pi * proj
        return torch.cat((proj.sin(), proj.cos()), dim=-1)

    def grid(self, size: int) -> torch.Tensor:
        """Encoding of pixel centres of a (size, size) grid: (C, size, size)."""
        device = self.positional_encoding_gaussian_matrix.device
        centres = (torch.arange(size, dtype=torch.float32, device=device) + 0.5) / size
        ys, xs = torch.meshgrid(centres, centres, indexing="ij")
        return self.encode(torch.stack((xs, ys), dim=-1)).permute(2, 0, 1)

    def points(self, xy: torch.Tensor, image_size: int) -> torch.Tensor:
        """(B, N, 2) pixel coordinates (x, y) in model-input space -> (B, N, C)."""
        return self.encode(xy.float() / image_size)


def rope_rotations(dim: int, side: int, theta: float = 10000.0, device=None) -> torch.Tensor:
    """Unit complex rotations of axial 2D rotary encoding for a (side, side) token grid.

    Returns a (side*side, dim/2) complex64 tensor. Tokens are raster-ordered; the
    first half of the rotation pairs turns with the column, the second with the row.
    """
    # Built on the CPU (a small table, made once) and moved: not every backend has polar.
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    t = torch.arange(side * side, dtype=torch.float32)
    cols, rows = t % side, torch.div(t, side, rounding_mode="floor")
    angles = torch.cat((torch.outer(cols, freqs), torch.outer(rows, freqs)), dim=-1)
    return torch.polar(torch.ones_like(angles), angles).to(device)


def apply_rope(x: torch.Tensor, rotations: torch.Tensor, out: torch.Tensor | None = None):
    """Rotate consecutive channel pairs of x (..., N, dim) by ``rotations`` (N, dim/2).

    ``rotations`` broadcasts over x's leading axes (batch, heads, memory frames).

    Each pair (a, b) is read as the complex number a + ib, so the rotation is one
    complex product: a single pass over x. With ``out`` (x's shape and dtype) the
    result is written there, which may be x itself.
    """
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    rotated = torch.view_as_real(pairs * rotations).flatten(-2)
    if out is None:
        return rotated.type_as(x)
    return out.copy_(rotated)
