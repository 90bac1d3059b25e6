"""Prompt encoder: clicks and box corners become sparse tokens, masks a dense map."""

from __future__ import annotations

import torch
from torch import nn

from .common import LayerNorm2d
from .position_encoding import RandomFourierEncoding

# Point labels understood by the model.
NOT_A_POINT, NEGATIVE, POSITIVE, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT = -1, 0, 1, 2, 3


class PromptEncoder(nn.Module):
    """Encodes points (x, y in model-input pixels) and low-resolution mask logits.

    Sparse output: (B, N + 1, C), the points plus one padding ("not a point")
    token, which the released model always receives. Dense output:
    (B, C, S/16, S/16), from a mask prompt of (B, 1, S/4, S/4), or a learnt
    "no mask" embedding broadcast over the grid.
    """

    def __init__(self, embed_dim: int, image_size: int, mask_in_chans: int = 16) -> None:
        super().__init__()
        self.image_size = image_size
        self.grid_size = image_size // 16
        self.pe_layer = RandomFourierEncoding(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        quarter = mask_in_chans // 4
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, quarter, kernel_size=2, stride=2),
            LayerNorm2d(quarter),
            nn.GELU(),
            nn.Conv2d(quarter, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        self._dense_pe: torch.Tensor | None = None

    @property
    def mask_input_size(self) -> int:
        return self.image_size // 4

    def dense_pe(self) -> torch.Tensor:
        """(1, C, S/16, S/16) encoding of the image-embedding grid (cached)."""
        pe = self._dense_pe
        weight = self.pe_layer.positional_encoding_gaussian_matrix
        if pe is None or pe.device != weight.device or pe.dtype != weight.dtype:
            pe = self._dense_pe = self.pe_layer.grid(self.grid_size)[None]
        return pe

    def _apply(self, fn, recurse=True):
        self._dense_pe = None  # device or dtype changes invalidate the cache
        return super()._apply(fn, recurse)

    def embed_points(self, xy: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, N, 2) x/y and (B, N) int labels -> (B, N + 1, C) with a padding token."""
        b = xy.shape[0]
        xy = torch.cat([xy + 0.5, xy.new_zeros(b, 1, 2)], dim=1)  # + 0.5: pixel centres
        labels = torch.cat([labels, labels.new_full((b, 1), NOT_A_POINT)], dim=1)
        emb = self.pe_layer.points(xy, self.image_size)
        lab = labels[..., None]
        emb = torch.where(lab == NOT_A_POINT, self.not_a_point_embed.weight.expand_as(emb), emb)
        for value, table in enumerate(self.point_embeddings):
            emb = torch.where(lab == value, emb + table.weight, emb)
        return emb

    def forward(
        self,
        xy: torch.Tensor | None,
        labels: torch.Tensor | None,
        mask_logits: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Points (B, N, 2)/(B, N) or None, and mask logits (B, 1, S/4, S/4) or None.

        With no points at all the sparse output is empty, (B, 0, C).
        """
        weight = self.no_mask_embed.weight
        if xy is not None:
            sparse = self.embed_points(xy, labels)
        else:
            b = 1 if mask_logits is None else mask_logits.shape[0]
            sparse = weight.new_zeros(b, 0, weight.shape[1])
        if mask_logits is not None:
            # Channels-last like the image features it is added to, so the sum is
            # one contiguous pass and its token view needs no copy.
            dense = self.mask_downscaling(mask_logits).contiguous(memory_format=torch.channels_last)
        else:
            g = self.grid_size
            dense = weight.reshape(1, -1, 1, 1).expand(sparse.shape[0], -1, g, g)
        return sparse, dense
