"""SAM 2 mask decoder: output tokens + two-way transformer + upscaling + heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .common import MLP, LayerNorm2d
from .transformer import TwoWayTransformer


@dataclass
class DecoderOutput:
    """Decoder output for a batch of B prompts.

    ``masks``: (B, M, S/4, S/4) logits; M = 3 with multimask output, else 1.
    ``ious``: (B, M) predicted IoU. ``tokens``: (B, M, C) the mask tokens that
    produced ``masks`` (for object pointers). ``object_logits``: (B, 1), > 0 when
    the object is judged present.
    """

    masks: torch.Tensor
    ious: torch.Tensor
    tokens: torch.Tensor
    object_logits: torch.Tensor


class MaskDecoder(nn.Module):
    num_mask_tokens = 4  # one single-mask token + three multimask tokens

    def __init__(
        self,
        dim: int = 256,
        stability_delta: float = 0.05,
        stability_thresh: float = 0.98,
    ) -> None:
        super().__init__()
        self.stability_delta = stability_delta
        self.stability_thresh = stability_thresh
        self.transformer = TwoWayTransformer(depth=2, dim=dim, num_heads=8, mlp_dim=2048)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.obj_score_token = nn.Embedding(1, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        # Project the stride-4 and stride-8 encoder maps for the upscaling path.
        self.conv_s0 = nn.Conv2d(dim, dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(dim, dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(dim, 256, self.num_mask_tokens, 3, sigmoid_output=True)
        self.pred_obj_score_head = MLP(dim, dim, 1, 3)

    def forward(
        self, image, high_res, image_pe, sparse, dense, *, multimask: bool
    ) -> DecoderOutput:
        """Decode masks.

        image (B or 1, C, h, w) is broadcast to the B prompts; dense (B, C, h, w);
        sparse (B, N, C); high_res: the projected stride-4 and stride-8 maps
        (B or 1, C/8, 4h, 4w) and (B or 1, C/4, 2h, 2w).
        """
        masks, ious, tokens, obj = self._predict(image, high_res, image_pe, sparse, dense)
        if multimask:
            return DecoderOutput(masks[:, 1:], ious[:, 1:], tokens[:, 1:], obj)
        # The pointer token stays the single-mask token even when the stability
        # fallback below picks a multimask output.
        masks, ious = self._stable_single(masks, ious)
        return DecoderOutput(masks, ious, tokens[:, :1], obj)

    def _predict(self, image, high_res, image_pe, sparse, dense):
        b = sparse.shape[0]
        out_tokens = torch.cat(
            [self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight]
        )
        tokens = torch.cat([out_tokens.expand(b, -1, -1), sparse], dim=1)
        src = image.expand(b, -1, -1, -1) + dense
        pe = image_pe.expand(b, -1, -1, -1)
        c, h, w = src.shape[1:]

        hs, src = self.transformer(src, pe, tokens)
        obj_token, iou_token = hs[:, 0], hs[:, 1]
        mask_tokens = hs[:, 2 : 2 + self.num_mask_tokens]

        up = self._upscale(src.transpose(1, 2).reshape(b, c, h, w), high_res)
        hyper = torch.stack(
            [mlp(mask_tokens[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        bu, cu, hu, wu = up.shape
        masks = (hyper @ up.reshape(bu, cu, hu * wu)).reshape(bu, -1, hu, wu)
        return (
            masks,
            self.iou_prediction_head(iou_token),
            mask_tokens,
            self.pred_obj_score_head(obj_token),
        )

    def _upscale(self, src: torch.Tensor, high_res) -> torch.Tensor:
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        feat_s0, feat_s1 = high_res
        x = act1(ln1(dc1(src) + feat_s1))
        return act2(dc2(x) + feat_s0)

    def _stable_single(self, masks: torch.Tensor, ious: torch.Tensor):
        """Keep the single-mask output where it is stable, else the best multimask one.

        Stability is the IoU between the mask thresholded at +delta and -delta.
        """
        single, single_iou = masks[:, :1], ious[:, :1]
        flat = single.flatten(-2)
        inter = (flat > self.stability_delta).sum(-1).float()
        union = (flat > -self.stability_delta).sum(-1).float()
        stability = torch.where(union > 0, inter / union, torch.ones_like(inter))
        stable = stability >= self.stability_thresh  # (B, 1)

        best = ious[:, 1:].argmax(dim=-1)
        rows = torch.arange(masks.shape[0], device=masks.device)
        best_mask = masks[:, 1:][rows, best][:, None]
        best_iou = ious[:, 1:][rows, best][:, None]
        return (
            torch.where(stable[..., None, None], single, best_mask),
            torch.where(stable, single_iou, best_iou),
        )
