"""Memory attention: conditions the current frame's features on past memories."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import by_row_chunks
from .transformer import RoPEAttention

MLP_ROWS = 512  # tokens per MLP chunk: a (512, 2048) hidden activation is 4 MB


class MemoryAttentionLayer(nn.Module):
    """RoPE self-attention, RoPE cross-attention to memories, then an MLP (pre-norm)."""

    def __init__(self, dim: int = 256, mem_dim: int = 64, ffn_dim: int = 2048) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(dim, num_heads=1)
        self.cross_attn_image = RoPEAttention(dim, num_heads=1, kv_in_dim=mem_dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x, keys, memory, num_ptr_tokens: int):
        """x (B, HW, C); keys = memory + its encoding, and memory: (B, M, mem_dim)."""
        y = self.norm1(x)
        x = x + self.self_attn(y, y, y)
        y = self.norm2(x)
        x = x + self.cross_attn_image(y, keys, memory, num_ptr_tokens)
        return x + by_row_chunks(self._mlp, x, MLP_ROWS)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(F.relu(self.linear1(self.norm3(x))))


class MemoryAttention(nn.Module):
    def __init__(self, dim: int = 256, mem_dim: int = 64, num_layers: int = 4) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MemoryAttentionLayer(dim, mem_dim) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)

    def forward(
        self,
        feats: torch.Tensor,
        feats_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        num_ptr_tokens: int = 0,
    ) -> torch.Tensor:
        """Condition features on memory.

        feats, feats_pos: (B, HW, C) current frame tokens and their encoding.
        memory, memory_pos: (B, M, mem_dim): spatial memories (several HW grids)
        followed by ``num_ptr_tokens`` object-pointer tokens. Returns (B, HW, C).
        """
        x = feats + 0.1 * feats_pos
        # Keys carry position (spatial + temporal); queries and values do not.
        keys = memory + memory_pos
        for layer in self.layers:
            x = layer(x, keys, memory, num_ptr_tokens)
        return self.norm(x)
