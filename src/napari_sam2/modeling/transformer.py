"""Attention layers and the two-way transformer of the SAM mask decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP
from .position_encoding import apply_rope, rope_rotations


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v projections.

    ``downsample_rate`` shrinks the internal width; ``kv_in_dim`` lets keys and
    values come from a narrower input (64-channel memories).
    """

    def __init__(
        self, dim: int, num_heads: int, downsample_rate: int = 1, kv_in_dim: int | None = None
    ) -> None:
        super().__init__()
        inner = dim // downsample_rate
        kv_in_dim = kv_in_dim or dim
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(kv_in_dim, inner)
        self.v_proj = nn.Linear(kv_in_dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C) -> (B, h, N, C/h)
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(q, k, v)
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, Nq, C), k and v (B, Nk, C_kv) -> (B, Nq, C)."""
        # Between a few prompt tokens and thousands of image tokens, projecting
        # the image tokens costs more than the attention itself; folding those
        # projections into the few tokens' side halves the work (same function).
        few = self.num_heads * min(q.shape[1], k.shape[1]) < self.q_proj.out_features
        if few and q.shape[1] < k.shape[1]:
            return self._few_queries(q, k, v)
        if few and k.shape[1] < q.shape[1]:
            return self._few_keys(q, k, v)
        return self._attend(
            self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        )

    def _few_queries(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention for Nq << Nk with the key and value projections moved to the queries.

        Per head j: (Q_j Wk_j) k^T equals Q_j K_j^T up to a per-query constant
        (from the key bias), which the softmax removes; and P_j V_j equals
        (P_j v) Wv_j^T + bv_j because each row of P_j sums to one.
        """
        b, nq, _ = q.shape
        h = self.num_heads
        qh = self._heads(self.q_proj(q))  # (B, h, Nq, d)
        d = qh.shape[-1]
        qk = (qh @ self.k_proj.weight.view(h, d, -1)) * d**-0.5  # (B, h, Nq, C_kv)
        p = (qk.reshape(b, h * nq, -1) @ k.transpose(1, 2)).softmax(-1)  # (B, h*Nq, Nk)
        pv = (p @ v).view(b, h, nq, -1)  # (B, h, Nq, C_kv)
        wv, bv = self.v_proj.weight.view(h, d, -1), self.v_proj.bias.view(h, 1, d)
        out = pv @ wv.transpose(1, 2) + bv  # (B, h, Nq, d)
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, h * d))

    def _few_keys(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention for Nk << Nq with the query and output projections moved to the keys.

        Per head j: Q_j K_j^T = q (Wq_j^T K_j^T) + bq_j K_j^T, and the output
        projection of P_j V_j is P_j (V_j Wo_j^T), summed over heads.
        """
        b, nq, _ = q.shape
        h, nk = self.num_heads, k.shape[1]
        kh = self._heads(self.k_proj(k))  # (B, h, Nk, d)
        d = kh.shape[-1]
        wq = self.q_proj.weight.view(h, d, -1)  # (h, d, C)
        a = (wq.transpose(1, 2) @ kh.transpose(2, 3)) * d**-0.5  # (B, h, C, Nk)
        a = a.permute(0, 2, 1, 3).reshape(b, -1, h * nk)  # (B, C, h*Nk)
        c = (self.q_proj.bias.view(h, 1, d) * kh).sum(-1).reshape(b, 1, h * nk) * d**-0.5
        p = torch.baddbmm(c, q, a).view(b, nq, h, nk).softmax(-1)  # (B, Nq, h, Nk)
        wo = self.out_proj.weight.view(-1, h, d).permute(1, 2, 0)  # (h, d, C)
        m = self._heads(self.v_proj(v)) @ wo  # (B, h, Nk, C)
        return torch.baddbmm(self.out_proj.bias, p.reshape(b, nq, h * nk), m.reshape(b, h * nk, -1))


class RoPEAttention(Attention):
    """Attention with axial 2D rotary encoding on a square token grid.

    Queries form one grid; keys are one or more grids of the same size (several
    memory frames), followed by ``num_k_exclude_rope`` tokens (object pointers)
    that are not rotated.
    """

    def __init__(self, *args, rope_theta: float = 10000.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rope_theta = rope_theta
        self._tables: dict[tuple, torch.Tensor] = {}

    def _rotations(self, n_tokens: int, head_dim: int, device) -> torch.Tensor:
        """Rotations (n_tokens, head_dim/2) for a square grid of ``n_tokens``."""
        side = int(round(n_tokens**0.5))
        # Inference-mode tables cannot enter autograd (training): one per mode.
        key = (side, head_dim, str(device), torch.is_inference_mode_enabled())
        if key not in self._tables:
            self._tables[key] = rope_rotations(head_dim, side, self.rope_theta, device)
        return self._tables[key]

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0
    ) -> torch.Tensor:
        q = self._heads(self.q_proj(q))
        k = self._heads(self.k_proj(k))
        v = self._heads(self.v_proj(v))
        n_q, head_dim = q.shape[-2:]
        rot = self._rotations(n_q, head_dim, q.device)
        q = apply_rope(q, rot)
        n_rope = k.shape[-2] - num_k_exclude_rope
        if n_rope > 0:
            # Rotated in place, one grid per memory frame (the table broadcasts):
            # the unrotated pointer tokens stay where they are, and no second copy
            # of the (large) memory keys is made.
            grids = k[:, :, :n_rope].unflatten(2, (n_rope // n_q, n_q))
            apply_rope(grids, rot, out=grids)
        return self._attend(q, k, v)


class TwoWayBlock(nn.Module):
    """Tokens attend to themselves and to the image; then the image attends to tokens."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, skip_first_pe: bool) -> None:
        super().__init__()
        self.self_attn = Attention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, num_heads, downsample_rate=2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim, dim, 2, activation=nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, num_heads, downsample_rate=2)
        self.skip_first_pe = skip_first_pe

    def forward(self, tokens, image, token_pe, image_pe):
        if self.skip_first_pe:
            # The first layer's queries *are* the prompt embeddings; no residual.
            tokens = self.self_attn(tokens, tokens, tokens)
        else:
            q = tokens + token_pe
            tokens = tokens + self.self_attn(q, q, tokens)
        tokens = self.norm1(tokens)

        # The image with its encoding: keys here, queries of the image-to-token step.
        keyed = image + image_pe
        tokens = self.norm2(
            tokens + self.cross_attn_token_to_image(tokens + token_pe, keyed, image)
        )
        tokens = self.norm3(tokens + self.mlp(tokens))

        q = tokens + token_pe
        image = self.norm4(image + self.cross_attn_image_to_token(keyed, q, tokens))
        return tokens, image


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int = 2, dim: int = 256, num_heads: int = 8, mlp_dim: int = 2048):
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayBlock(dim, num_heads, mlp_dim, skip_first_pe=(i == 0)) for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(dim, num_heads, downsample_rate=2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(
        self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image, image_pe (B, C, h, w); tokens (B, N, C) -> tokens (B, N, C), image (B, hw, C)."""
        image = image.flatten(2).transpose(1, 2)
        image_pe = image_pe.flatten(2).transpose(1, 2)
        token_pe = tokens
        for layer in self.layers:
            tokens, image = layer(tokens, image, token_pe, image_pe)
        attn = self.final_attn_token_to_image(tokens + token_pe, image + image_pe, image)
        return self.norm_final_attn(tokens + attn), image
