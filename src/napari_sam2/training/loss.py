"""The SAM 2 training loss for one prediction step of B objects.

focal : dice : IoU-prediction L1 : object-presence cross-entropy = 20 : 1 : 1 : 1.
Of several (multimask) outputs only the one with the lowest focal + dice loss is
backpropagated through the mask terms, as in SAM; the IoU head is supervised on
every output. Mask terms count only objects present in the frame; the object
term teaches presence. Each term is averaged over the B objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0


@dataclass
class LossTerms:
    """Weighted total and the unweighted terms (scalars) of one step."""

    total: torch.Tensor
    focal: torch.Tensor
    dice: torch.Tensor
    iou: torch.Tensor
    object: torch.Tensor


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float = FOCAL_ALPHA,
    gamma: float = FOCAL_GAMMA,
) -> torch.Tensor:
    """(B, M, S, S) logits, (B, 1, S, S) target -> (B, M) mean focal loss per mask.

    ``gamma = 0`` is cross-entropy weighted by ``alpha`` (positives) and ``1 - alpha``.
    """
    ce = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none")
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    if gamma == 0:
        return (alpha_t * ce).flatten(2).mean(-1)
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    return (alpha_t * ce * (1 - p_t) ** gamma).flatten(2).mean(-1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, M, S, S), (B, 1, S, S) -> (B, M) soft dice loss (smoothed by 1)."""
    p = torch.sigmoid(logits).flatten(2)
    t = target.flatten(2)
    inter = (p * t).sum(-1)
    return 1 - (2 * inter + 1) / (p.sum(-1) + t.sum(-1) + 1)


def actual_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, M) IoU of the thresholded masks with the target (1 where both are empty)."""
    pred = (logits > 0).flatten(2).float()
    t = target.flatten(2)
    inter = (pred * t).sum(-1)
    union = pred.sum(-1) + t.sum(-1) - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def step_loss(
    logits: torch.Tensor,
    ious: torch.Tensor,
    object_logits: torch.Tensor,
    target: torch.Tensor,
    weights: tuple[float, float, float, float] = (20.0, 1.0, 1.0, 1.0),
    focal: tuple[float, float] = (FOCAL_ALPHA, FOCAL_GAMMA),
) -> LossTerms:
    """Loss of one prediction step.

    logits: (B, M, S, S) mask logits at the ground truth's size; ious: (B, M)
    predicted IoU; object_logits: (B, 1); target: (B, S, S) 0/1.
    """
    target = target[:, None].float()
    present = target.flatten(1).any(-1).float()  # (B,)
    focal_l = focal_loss(logits, target, *focal)
    dice = dice_loss(logits, target)
    best = (weights[0] * focal_l + weights[1] * dice).argmin(dim=-1)
    rows = torch.arange(len(best))
    n = max(1, len(best))
    focal_b = (focal_l[rows, best] * present).sum() / n
    dice_b = (dice[rows, best] * present).sum() / n
    iou_l1 = ((ious - actual_iou(logits.detach(), target)).abs().mean(-1) * present).sum() / n
    obj = F.binary_cross_entropy_with_logits(object_logits[:, 0], present, reduction="sum") / n
    total = weights[0] * focal_b + weights[1] * dice_b + weights[2] * iou_l1 + weights[3] * obj
    return LossTerms(total, focal_b.detach(), dice_b.detach(), iou_l1.detach(), obj.detach())
