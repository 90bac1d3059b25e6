"""One clip through the model, frame by frame, as in inference, with simulated prompts.

The plan of a clip follows the SAM 2 recipe:

1. 1-2 initial conditioning frames (the first always) get the clip's prompt: the
   ground-truth mask, or a click, or a box.
2. Those frames are predicted without memory; every other frame, in temporal order,
   attends to the memories of the conditioning frames and of the previous
   ``num_maskmem - 1`` frames and to past object pointers, through the same
   :class:`~napari_sam2.modeling.sam2.MemoryContext` rule that
   :class:`~napari_sam2.video.VideoSession` uses.
3. With point prompts, 1-2 frames (the first always) get ``correction_points``
   corrective clicks, one at a time, each sampled from the current error; such a
   frame then becomes a conditioning frame.

Every prediction step is scored by :func:`~napari_sam2.training.loss.step_loss`;
gradients flow through memories and pointers across the whole clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..modeling.memory_selection import select_memories
from ..modeling.sam2 import Sam2Model, TrackOutput
from . import prompts as sim
from .config import TrainConfig
from .loss import LossTerms, step_loss


@dataclass(frozen=True)
class ClipPlan:
    """Which frames are prompted, how, and which get corrective clicks."""

    init_frames: tuple[int, ...]
    prompt: str  # "mask", "click" or "box"
    correct_frames: tuple[int, ...]


def plan_clip(length: int, cfg: TrainConfig, rng: np.random.Generator) -> ClipPlan:
    """Draw a clip's plan with the recipe's probabilities."""
    n_init = int(rng.integers(1, cfg.max_init_cond_frames + 1)) if length > 1 else 1
    # At least one frame is predicted from memory: a 2-frame clip whose frames were
    # both mask-prompted would have nothing to learn from (no loss at all).
    n_init = min(n_init, max(1, length - 1))
    others = list(range(1, length))
    extra = rng.choice(others, size=min(n_init - 1, len(others)), replace=False) if others else []
    init = (0, *sorted(int(t) for t in extra))
    # A single image (the image phase) is never mask-prompted: it would teach nothing.
    if length > 1 and rng.random() < cfg.prob_mask_prompt:
        return ClipPlan(init, "mask", ())
    prompt = "box" if rng.random() < cfg.prob_box_given_points else "click"
    n_fix = int(rng.integers(1, cfg.max_frames_to_correct + 1)) if length > 1 else 1
    extra = rng.choice(others, size=min(n_fix - 1, len(others)), replace=False) if others else []
    return ClipPlan(init, prompt, (0, *sorted(int(t) for t in extra)))


@dataclass
class _Frame:
    """What later frames read of a processed frame: memory, pointer, and the role."""

    memory: torch.Tensor  # (B, mem_dim, h, w)
    ptr: torch.Tensor  # (B, C)
    cond: bool


@dataclass
class RolloutResult:
    """Loss terms of every prediction step, and the final low-res logits per frame."""

    steps: list[LossTerms] = field(default_factory=list)
    low_res: dict[int, torch.Tensor] = field(default_factory=dict)

    def total(self) -> torch.Tensor:
        return torch.stack([s.total for s in self.steps]).sum()


def memory_context(model: Sam2Model, done: dict[int, _Frame], frame: int, length: int):
    """The memories and pointers ``frame`` attends to (forward order), batched.

    :func:`~napari_sam2.modeling.memory_selection.select_memories`, the rule the
    video session uses, over the frames of the clip done so far.
    """

    def recent(t: int):
        f = done.get(t)
        return None if f is None or f.cond else (f.memory, f.ptr)

    cond = {t: (f.memory, f.ptr) for t, f in done.items() if f.cond}
    return select_memories(model.cfg, cond, recent, frame, length)


def rollout(
    model: Sam2Model,
    images: torch.Tensor,
    masks: torch.Tensor,
    plan: ClipPlan,
    cfg: TrainConfig,
    rng: np.random.Generator,
) -> RolloutResult:
    """Run a clip. images (T, 3, S, S); masks (T, B, S, S) 0/1 ground truth."""
    length, b = masks.shape[:2]
    size = model.cfg.image_size
    feats = model.encode_image(images)
    weights = (cfg.w_focal, cfg.w_dice, cfg.w_iou, cfg.w_object)
    focal = (cfg.focal_alpha, cfg.focal_gamma)
    result = RolloutResult()
    done: dict[int, _Frame] = {}
    order = list(plan.init_frames) + [t for t in range(length) if t not in plan.init_frames]

    for t in order:
        raw = feats.fpn[2][t : t + 1].expand(b, -1, -1, -1)
        high = (feats.fpn[0][t : t + 1], feats.fpn[1][t : t + 1])
        gt = masks[t]
        is_init = t in plan.init_frames
        if is_init and plan.prompt == "mask":
            out = model.mask_as_output(raw, high, gt[:, None])
        else:
            if is_init:
                pix = raw + model.no_mem_embed.view(1, -1, 1, 1)
                xy, labels = (sim.boxes if plan.prompt == "box" else sim.clicks)(gt, rng)
                xy, labels = xy.to(gt.device), labels.to(gt.device)
            else:
                ctx = memory_context(model, done, t, length)
                pix = model.condition_on_memory(raw, feats.pos[2][:1], ctx)
                xy = labels = None
            out = _predict(model, pix, high, xy, labels, None, gt, (weights, focal), result, size)
            if t in plan.correct_frames:
                for _ in range(cfg.correction_points):
                    pred = _binary(out.low_res.detach(), size)
                    cxy, clab = sim.corrections(gt.cpu(), pred.cpu(), rng, cfg.prob_click_from_gt)
                    cxy, clab = cxy.to(gt.device), clab.to(gt.device)
                    xy = cxy if xy is None else torch.cat([xy, cxy], dim=1)
                    labels = clab if labels is None else torch.cat([labels, clab], dim=1)
                    prev = out.low_res.clamp(-32.0, 32.0)
                    out = _predict(
                        model, pix, high, xy, labels, prev, gt, (weights, focal), result, size
                    )
        logits = model.high_res(out)
        # Training feeds the memory encoder sigmoid probabilities, never binarised
        # masks, so gradients reach the decoder through the memories.
        memory = model.encode_memory(raw, logits, out.object_logits, False)
        cond = is_init or t in plan.correct_frames
        done[t] = _Frame(memory, out.obj_ptr, cond)
        result.low_res[t] = out.low_res.detach()
    return result


def _binary(low_res: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 1, q, q) logits -> (B, S, S) 0/1 at the ground truth's size."""
    up = F.interpolate(low_res, (size, size), mode="bilinear", align_corners=False)
    return (up[:, 0] > 0).float()


def _predict(model, pix, high, xy, labels, prev, gt, loss_args, result, size) -> TrackOutput:
    """Decode, score every output against ``gt``, keep the best (as inference does)."""
    n_points = 0 if labels is None else labels.shape[1]
    multimask = model.wants_multimask(n_points)
    dec = model.decode(pix, high, xy, labels, prev, multimask)
    up = F.interpolate(dec.masks, (size, size), mode="bilinear", align_corners=False)
    result.steps.append(step_loss(up, dec.ious, dec.object_logits, gt, *loss_args))
    return model.select(dec, multimask)
