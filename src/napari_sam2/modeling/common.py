"""Small building blocks shared by several SAM 2 components."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """``num_layers`` linear layers with an activation between them (none after the last).

    Parameters are stored as ``layers.{i}.weight/bias``, the checkpoint's naming.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int,
        activation: type[nn.Module] = nn.ReLU,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = activation()
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.act(x)
        return torch.sigmoid(x) if self.sigmoid_output else x


def by_row_chunks(fn, x: torch.Tensor, rows: int) -> torch.Tensor:
    """Apply a row-wise ``fn`` to (..., N, C) in chunks of ``rows`` tokens.

    For token-wise layers (MLPs, norms) this is the same function; it keeps a
    wide hidden activation small enough to stay in the CPU cache. The leading
    axes count as rows too, so a batch of many objects is chunked like one
    long sequence.
    """
    lead, c = x.shape[:-1], x.shape[-1]
    flat = x.reshape(-1, c)
    if flat.shape[0] <= rows:
        return fn(x)
    out = torch.cat([fn(flat[i : i + rows]) for i in range(0, flat.shape[0], rows)])
    return out.reshape(*lead, out.shape[-1])


class LayerNorm2d(nn.Module):
    """Layer norm over the channel axis of a (B, C, H, W) map."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).square().mean(1, keepdim=True)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]
