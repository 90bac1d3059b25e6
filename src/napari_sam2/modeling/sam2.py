"""The SAM 2 network: image encoder, SAM heads, memory encoder and memory attention.

:class:`Sam2Model` is stateless between calls. Which memories a frame sees is
decided by the caller (the video engine's memory bank) and passed in as a
:class:`MemoryContext`; the model only computes.

Coordinates inside the model are (x, y) in model-input pixels (0..image_size),
the convention of the released weights; public APIs convert from (row, col).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP
from .config import Sam2Config
from .image_encoder import ImageEncoder, ImageFeatures
from .mask_decoder import DecoderOutput, MaskDecoder
from .memory_attention import MemoryAttention
from .memory_encoder import MemoryEncoder
from .position_encoding import sine_1d_encoding
from .prompt_encoder import NOT_A_POINT, PromptEncoder

NO_OBJECT_LOGIT = -1024.0  # mask logits written where the object is judged absent
MASK_PROMPT_SCALE, MASK_PROMPT_BIAS = 20.0, -10.0  # a binary mask -> confident logits


@dataclass
class MemoryContext:
    """What a non-conditioning frame attends to, for a batch of B objects.

    ``spatial``: (t_pos, features) pairs; t_pos 0 for conditioning (prompted)
    frames, 1..num_maskmem-1 for the previous frames, oldest first; features
    are (B, mem_dim, h, w). ``pointers``: (temporal offset, (B, C) pointer)
    pairs; the offset is an int shared by the batch, or a (B,) integer tensor
    (objects prompted on different frames batched together: attention knows a
    pointer only by its offset). ``num_frames``: the video length, which scales
    the pointer encoding.
    """

    spatial: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    pointers: list[tuple[int | torch.Tensor, torch.Tensor]] = field(default_factory=list)
    num_frames: int = 1


@dataclass
class TrackOutput:
    """One frame's prediction for B objects.

    ``low_res``: (B, 1, S/4, S/4) logits; ``high_res``: (B, 1, S, S) logits, or
    None where only the low-res output was needed (see :meth:`Sam2Model.high_res`);
    ``obj_ptr``: (B, C); ``object_logits``: (B, 1); ``memory``: (B, mem_dim,
    S/16, S/16) when the memory encoder ran, else None. ``ious``: (B,) the
    decoder's predicted IoU of the kept mask; ``stability``: (B,) its stability
    score (:func:`stability_score`); both None where no decoder mask was kept
    (a mask prompt used as the prediction).
    """

    low_res: torch.Tensor
    high_res: torch.Tensor | None
    obj_ptr: torch.Tensor
    object_logits: torch.Tensor
    memory: torch.Tensor | None = None
    ious: torch.Tensor | None = None
    stability: torch.Tensor | None = None


STABILITY_OFFSET = 1.0  # logit offset of the stability score (as SAM's automatic mask generator)


def stability_score(logits: torch.Tensor, offset: float = STABILITY_OFFSET) -> torch.Tensor:
    """How little a mask changes with its threshold: (B, 1, h, w) logits -> (B,) in [0, 1].

    The IoU of the mask thresholded at ``+offset`` with the one at ``-offset``
    (1 where both are empty).
    """
    flat = logits.flatten(1)
    inner = (flat > offset).sum(1).float()
    outer = (flat > -offset).sum(1).float()
    return torch.where(outer > 0, inner / outer.clamp(min=1), torch.ones_like(inner))


class Sam2Model(nn.Module):
    def __init__(self, cfg: Sam2Config) -> None:
        super().__init__()
        self.cfg = cfg
        c, m = cfg.d_model, cfg.mem_dim
        self.image_encoder = ImageEncoder(cfg.trunk, c)
        self.memory_attention = MemoryAttention(c, m, cfg.memory_attention_layers)
        self.memory_encoder = MemoryEncoder(c, m)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(cfg.num_maskmem, 1, 1, m))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, c))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, c))  # stored, unused at inference
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, c))
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        if cfg.no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, m))
        self.sam_prompt_encoder = PromptEncoder(c, cfg.image_size)
        self.sam_mask_decoder = MaskDecoder(
            c, cfg.dynamic_multimask_stability_delta, cfg.dynamic_multimask_stability_thresh
        )
        self.obj_ptr_proj = MLP(c, c, c, 3)
        if cfg.proj_tpos_enc_in_obj_ptrs:
            self.obj_ptr_tpos_proj = nn.Linear(c, m)
        self._init_embeddings()

    def _init_embeddings(self) -> None:
        for p in (self.maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc, self.no_obj_ptr):
            nn.init.trunc_normal_(p, std=0.02)
        if self.cfg.no_obj_embed_spatial:
            nn.init.trunc_normal_(self.no_obj_embed_spatial, std=0.02)

    @property
    def device(self) -> torch.device:
        return self.no_mem_embed.device

    # -- image ---------------------------------------------------------------

    def encode_image(self, image: torch.Tensor) -> ImageFeatures:
        """(B, 3, S, S) normalised image -> features with decoder-projected high-res levels."""
        feats = self.image_encoder(image)
        dec = self.sam_mask_decoder
        feats.fpn = [dec.conv_s0(feats.fpn[0]), dec.conv_s1(feats.fpn[1]), feats.fpn[2]]
        return feats

    # -- SAM heads -----------------------------------------------------------

    def wants_multimask(self, n_points: int) -> bool:
        """Whether to decode three candidate masks (kept: the best predicted IoU) or one.

        A single click is ambiguous (part, cell, cluster): always three. A frame
        tracked from memory alone (no points): three when
        ``cfg.multimask_output_for_tracking``. Two or more points: one.
        """
        if n_points == 0:
            return self.cfg.multimask_output_for_tracking
        return n_points == 1

    def run_heads(
        self,
        pix_feat: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
        xy: torch.Tensor | None,
        labels: torch.Tensor | None,
        mask_prompt: torch.Tensor | None,
        multimask: bool,
    ) -> TrackOutput:
        """Prompt encoder + decoder, keeping the best mask and making the object pointer.

        pix_feat (B, C, h, w); xy (B, N, 2) model-input (x, y); labels (B, N);
        mask_prompt (B, 1, S/4, S/4) logits.
        """
        dec = self.decode(pix_feat, high_res, xy, labels, mask_prompt, multimask)
        return self.select(dec, multimask)

    def decode(
        self,
        pix_feat: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
        xy: torch.Tensor | None,
        labels: torch.Tensor | None,
        mask_prompt: torch.Tensor | None,
        multimask: bool,
    ) -> DecoderOutput:
        """All decoder outputs (M = 3 with multimask, else 1) for B prompts.

        Mask logits of objects judged absent are replaced by NO_OBJECT_LOGIT, as
        the memory encoder and the user will see them. Training supervises every
        output; :meth:`select` keeps the best one.
        """
        b = pix_feat.shape[0]
        if xy is None:
            xy = pix_feat.new_zeros(b, 1, 2)
            labels = torch.full((b, 1), NOT_A_POINT, dtype=torch.int32, device=pix_feat.device)
        if mask_prompt is not None:
            size = self.sam_prompt_encoder.mask_input_size
            if mask_prompt.shape[-2:] != (size, size):
                mask_prompt = F.interpolate(
                    mask_prompt.float(), (size, size), mode="bilinear", antialias=True
                )
        sparse, dense = self.sam_prompt_encoder(xy, labels, mask_prompt)
        pe = self.sam_prompt_encoder.dense_pe()
        dec = self.sam_mask_decoder(pix_feat, high_res, pe, sparse, dense, multimask=multimask)
        present = dec.object_logits > 0
        dec.masks = torch.where(present[:, :, None, None], dec.masks, NO_OBJECT_LOGIT).float()
        return dec

    def select(self, dec: DecoderOutput, multimask: bool) -> TrackOutput:
        """The output with the highest predicted IoU, and its gated object pointer."""
        b = dec.masks.shape[0]
        rows = torch.arange(b, device=dec.masks.device)
        best = dec.ious.argmax(dim=-1) if multimask else torch.zeros_like(rows)
        low_res = dec.masks[rows, best][:, None]
        token = dec.tokens[rows, best] if dec.tokens.shape[1] > 1 else dec.tokens[:, 0]
        present = (dec.object_logits > 0).float()
        ptr = self._gate_pointer(self.obj_ptr_proj(token), present)
        ious = dec.ious[rows, best]
        return TrackOutput(
            low_res, None, ptr, dec.object_logits, ious=ious, stability=stability_score(low_res)
        )

    def high_res(self, out: TrackOutput) -> torch.Tensor:
        """The (B, 1, S, S) logits of an output, upsampled from low-res when not kept.

        Only the memory encoder needs them; a click on a frame does not, so they
        are made on demand.
        """
        if out.high_res is None:
            size = self.cfg.image_size
            out.high_res = F.interpolate(
                out.low_res, (size, size), mode="bilinear", align_corners=False
            )
        return out.high_res

    def _gate_pointer(self, ptr: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Replace the pointer of absent objects by the learnt no-object pointer."""
        return present * ptr + (1 - present) * self.no_obj_ptr

    def mask_as_output(self, pix_feat: torch.Tensor, high_res, mask: torch.Tensor) -> TrackOutput:
        """Use a binary mask prompt (B, 1, S, S) directly as the prediction.

        The object pointer still comes from the decoder, prompted with the mask.
        """
        mask = mask.float()
        high = mask * MASK_PROMPT_SCALE + MASK_PROMPT_BIAS
        q = self.cfg.low_res_size
        low = F.interpolate(high, (q, q), mode="bilinear", align_corners=False, antialias=True)
        heads = self.run_heads(pix_feat, high_res, None, None, self.mask_downsample(mask), False)
        present = (mask.flatten(1) > 0).any(dim=1, keepdim=True).float()
        logits = MASK_PROMPT_SCALE * present + MASK_PROMPT_BIAS
        return TrackOutput(low, high, self._gate_pointer(heads.obj_ptr, present), logits)

    # -- memory --------------------------------------------------------------

    def condition_on_memory(
        self, feat: torch.Tensor, feat_pos: torch.Tensor, context: MemoryContext | None
    ) -> torch.Tensor:
        """Fuse the stride-16 features (B, C, h, w) with memories -> (B, C, h, w).

        With no context (a frame prompted before it was tracked) the learnt
        no-memory embedding is added instead.
        """
        b, c, h, w = feat.shape
        if context is None:
            return feat + self.no_mem_embed.view(1, c, 1, 1)
        memory, memory_pos, n_ptr = self._memory_tokens(context, b, (h, w))
        tokens = feat.flatten(2).transpose(1, 2)
        pos = feat_pos.flatten(2).transpose(1, 2).expand(b, -1, -1)
        out = self.memory_attention(tokens, pos, memory, memory_pos, n_ptr)
        return out.transpose(1, 2).reshape(b, c, h, w)

    def _memory_tokens(self, ctx: MemoryContext, b: int, hw: tuple[int, int]):
        """Flatten memories and pointers into (B, M, mem_dim) tokens and encodings."""
        cfg = self.cfg
        base_pos = self.memory_encoder.pos(hw[0], hw[1], self.device).flatten(1).T  # (hw, m)
        mems, poss = [], []
        for t_pos, feats in ctx.spatial:
            mems.append(feats.float().flatten(2).transpose(1, 2))
            tpos = self.maskmem_tpos_enc[cfg.num_maskmem - t_pos - 1].view(1, -1)
            poss.append((base_pos + tpos).expand(b, -1, -1))

        n_ptr_tokens = 0
        if ctx.pointers:
            if any(isinstance(o, torch.Tensor) for o, _ in ctx.pointers):
                offsets = torch.stack(  # (B, P): offsets differ across the batch
                    [torch.as_tensor(o, device=self.device).expand(b) for o, _ in ctx.pointers], 1
                )
            else:
                offsets = torch.tensor([o for o, _ in ctx.pointers], device=self.device)  # (P,)
            ptrs = torch.stack([p for _, p in ctx.pointers], dim=1)  # (B, P, C)
            split = cfg.d_model // cfg.mem_dim
            mems.append(ptrs.reshape(b, -1, cfg.mem_dim))  # each pointer -> `split` tokens
            poss.append(
                self._pointer_pos(offsets, ctx.num_frames)
                .repeat_interleave(split, -2)
                .expand(b, -1, -1)
            )
            n_ptr_tokens = ptrs.shape[1] * split
        return torch.cat(mems, dim=1), torch.cat(poss, dim=1), n_ptr_tokens

    def _pointer_pos(self, offsets: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Temporal encoding (..., mem_dim) of pointer offsets (...), scaled by the window length."""
        cfg = self.cfg
        if not cfg.add_tpos_enc_to_obj_ptrs:
            return torch.zeros(*offsets.shape, cfg.mem_dim, device=self.device)
        # The scale depends on the video length for short videos, as in the release.
        t_max = min(num_frames, cfg.max_obj_ptrs_in_encoder) - 1
        enc = sine_1d_encoding(offsets / t_max, cfg.d_model)
        return self.obj_ptr_tpos_proj(enc)

    def encode_memory(
        self,
        pix_feat: torch.Tensor,
        high_res_logits: torch.Tensor,
        object_logits: torch.Tensor,
        from_points: bool,
    ) -> torch.Tensor:
        """Memory (B, mem_dim, h, w) of a frame from its raw features and mask logits (B, 1, S, S)."""
        cfg = self.cfg
        if from_points and cfg.binarize_mask_from_pts_for_mem_enc:
            mask = (high_res_logits > 0).float()
        else:
            mask = torch.sigmoid(high_res_logits)
        mask = mask * cfg.sigmoid_scale_for_mem_enc + cfg.sigmoid_bias_for_mem_enc
        memory, _ = self.memory_encoder(pix_feat, mask)
        if cfg.no_obj_embed_spatial:
            absent = (object_logits <= 0).float()[..., None, None]  # (B, 1, 1, 1)
            memory = memory + absent * self.no_obj_embed_spatial[..., None, None]
        return memory

    # -- one tracking step ---------------------------------------------------

    def track_step(
        self,
        feats: ImageFeatures,
        batch: int,
        context: MemoryContext | None,
        xy: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        prev_logits: torch.Tensor | None = None,
        run_memory: bool = True,
    ) -> TrackOutput:
        """Predict B objects on one frame.

        feats: the frame's features (batch 1, shared by all objects). context:
        the objects' memories, or None on a frame prompted before it was tracked.
        xy/labels: point prompts (B, N, 2)/(B, N); mask: binary mask prompts
        (B, 1, S, S); prev_logits: the frame's previous low-res logits
        (B, 1, S/4, S/4), refined by new clicks.
        """
        raw = feats.fpn[2].expand(batch, -1, -1, -1)
        high_res = (feats.fpn[0], feats.fpn[1])
        if mask is not None:
            out = self.mask_as_output(raw, high_res, mask)
        else:
            pix = self.condition_on_memory(raw, feats.pos[2], context)
            n_points = 0 if labels is None else labels.shape[1]
            out = self.run_heads(
                pix, high_res, xy, labels, prev_logits, multimask=self.wants_multimask(n_points)
            )
        if run_memory:
            high = self.high_res(out)
            out.memory = self.encode_memory(raw, high, out.object_logits, xy is not None)
        return out
