"""Which memories and object pointers a tracked frame attends to: one rule for inference and training.

SAM 2 conditions each non-prompted frame on (a) the memories of every
conditioning (prompted) frame, at temporal position 0; (b) the memories of the
``num_maskmem - 1`` frames just before it in tracking order, oldest first at
position 1; (c) the object pointers of the conditioning frames not ahead of it,
and of up to ``max_obj_ptrs_in_encoder - 1`` frames before it. The video
session (:class:`~napari_sam2.video.VideoSession`) and the training rollout
(:func:`~napari_sam2.training.rollout.rollout`) both call :func:`select_memories`,
so a model is trained on exactly the context it will see.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from .config import Sam2Config
from .sam2 import MemoryContext

__all__ = ["select_memories"]

Entry = tuple[torch.Tensor, torch.Tensor]  # (memory features, object pointer)


def select_memories(
    cfg: Sam2Config,
    cond: Mapping[int, Entry],
    recent: Callable[[int], Entry | None],
    frame: int,
    num_frames: int,
    reverse: bool = False,
) -> MemoryContext:
    """The :class:`MemoryContext` of ``frame`` (see the module doc).

    ``cond``: frame index -> (memory (B, mem_dim, h, w), pointer (B, C)) of the
    conditioning frames; ``recent(t)``: the same pair for a tracked frame ``t``,
    or None where there is none; ``num_frames``: the video (or clip) length;
    ``reverse``: tracking runs toward frame 0.
    """
    step = -1 if reverse else 1
    spatial = [(0, memory) for memory, _ in cond.values()]
    for t_pos in range(1, cfg.num_maskmem):
        entry = recent(frame - step * (cfg.num_maskmem - t_pos))
        if entry is not None:
            spatial.append((t_pos, entry[0]))
    pointers = []
    for t, (_, ptr) in cond.items():
        if (t - frame) * step <= 0:  # only prompted frames not ahead of us
            signed = cfg.use_signed_tpos_enc_to_obj_ptrs
            pointers.append(((frame - t) * step if signed else abs(frame - t), ptr))
    for d in range(1, min(num_frames, cfg.max_obj_ptrs_in_encoder)):
        t = frame - step * d
        if not 0 <= t < num_frames:
            break
        entry = recent(t)
        if entry is not None:
            pointers.append((d, entry[1]))
    return MemoryContext(spatial, pointers, num_frames)
