"""SAM 2 mask decoder: output tokens + two-way transformer + upscaling + heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
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


STRIP_PIXELS = 2048  # stride-8 pixels per strip of the stride-4 level (about 1 MB)


def _as_linear(conv: nn.ConvTranspose2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (4*O, C) and bias (4*O,) of a kernel-2, stride-2 transposed convolution
    seen as a linear layer whose outputs are ordered (dy, dx, O)."""
    weight = conv.weight.permute(2, 3, 1, 0).reshape(4 * conv.out_channels, -1)
    return weight, conv.bias.repeat(4)


def upsample2x2(x: torch.Tensor, conv: nn.ConvTranspose2d) -> torch.Tensor:
    """A kernel-2, stride-2 ``ConvTranspose2d`` on a channels-last map.

    (B, h, w, C) -> (B, 2h, 2w, O). Each input pixel maps to its own 2x2 output
    block, so the convolution is a (C -> 4*O) linear layer plus a pixel shuffle.
    """
    b, h, w, _ = x.shape
    o = conv.out_channels
    y = F.linear(x, *_as_linear(conv)).view(b, h, w, 2, 2, o)
    return y.transpose(2, 3).reshape(b, 2 * h, 2 * w, o)


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

        hyper = torch.stack(
            [mlp(mask_tokens[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        return (
            self._masks(src.reshape(b, h, w, c), high_res, hyper),
            self.iou_prediction_head(iou_token),
            mask_tokens,
            self.pred_obj_score_head(obj_token),
        )

    def _masks(self, src: torch.Tensor, high_res, hyper: torch.Tensor) -> torch.Tensor:
        """Upscale the image tokens and project them on the mask tokens' hypernetworks.

        src (B, h, w, C) channels-last; hyper (B, M, C/8) -> masks (B, M, 4h, 4w).
        Each 2x2 stride-2 transposed convolution is a linear layer plus a pixel
        shuffle. The stride-4 level (the largest) is made and consumed by strips
        of rows, and in the linear layer's own (row, col, dy, dx) order, so that
        it never goes through memory whole: only the M-channel masks are shuffled.
        """
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        feat_s0, feat_s1 = high_res
        x = upsample2x2(src, dc1) + feat_s1.permute(0, 2, 3, 1)
        x = act1(F.layer_norm(x, (x.shape[-1],), ln1.weight, ln1.bias, ln1.eps))

        b, h2, w2, _ = x.shape
        o, m = dc2.out_channels, hyper.shape[1]
        weight, bias = _as_linear(dc2)
        feat = feat_s0.permute(0, 2, 3, 1)  # (1 or B, 2*h2, 2*w2, o)
        masks = x.new_empty(b, m, 2 * h2, 2 * w2)
        rows = max(1, STRIP_PIXELS // w2)
        for r in range(0, h2, rows):
            n = min(rows, h2 - r)
            y = F.linear(x[:, r : r + n], weight, bias).view(b, n, w2, 2, 2, o)
            f = feat[:, 2 * r : 2 * (r + n)].reshape(-1, n, 2, w2, 2, o).transpose(2, 3)
            y = act2(y + f)
            strip = hyper @ y.reshape(b, -1, o).transpose(1, 2)  # (B, M, n*w2*4)
            strip = strip.view(b, m, n, w2, 2, 2).transpose(3, 4)
            masks[:, :, 2 * r : 2 * (r + n)] = strip.reshape(b, m, 2 * n, 2 * w2)
        return masks

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
