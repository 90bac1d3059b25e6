"""Training configuration, and the architecture of the bundled ``sam2_micro_cells``.

The recipe's constants follow the SAM 2 paper and the reference's training
configuration (sam2.1 training YAML): 8-frame clips, up to 3 objects, prompt the
first frame with the ground-truth mask (p = 0.5), a click (0.25) or a box (0.25);
1-2 initial conditioning frames; corrective clicks on 1-2 frames (the first always),
7 per frame, sampled from the ground truth instead of the error with p = 0.1; loss
weights focal 20, dice 1, IoU 1, object score 1; AdamW, weight decay 0.1 (none on
biases and norms), layer-wise lr decay 0.9 over the trunk, gradient norm clipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..modeling.config import HieraConfig, Sam2Config


def micro_cells_config() -> Sam2Config:
    """The ``sam2_micro_cells`` architecture: a narrow 8-block Hiera at 256 px.

    About 7 M parameters (14 MB in float16). Windows are chosen to tile the
    256 px grids exactly (64, 32, 16 and 8 tokens a side).
    """
    trunk = HieraConfig(
        embed_dim=48,
        num_heads=1,
        stages=(1, 2, 4, 1),
        global_att_blocks=(4, 6),
        window_spec=(8, 4, 8, 8),
        window_pos_embed_bkg_spatial_size=(8, 8),
    )
    return Sam2Config(
        name="sam2_micro_cells",
        trunk=trunk,
        image_size=256,
        d_model=128,
        memory_attention_layers=2,
    )


def init_scratch_model(
    cfg: Sam2Config, prompt_pe_scale: float = 1.0, seed: int = 0, tie_decoder_qk: bool = False
):
    """A freshly initialised model for training from scratch.

    ``prompt_pe_scale`` multiplies the prompt encoder's random Fourier frequencies
    (a buffer saved in the checkpoint, so the architecture is unchanged). At 1 the
    point-to-image similarity spreads over about 30 px of a 256 px image, wider than
    the gap between neighbouring cells, and a model trained from scratch then learns
    to segment every cell instead of the clicked one; a larger scale sharpens it.
    """
    import torch

    from ..modeling.sam2 import Sam2Model

    torch.manual_seed(seed)
    model = Sam2Model(cfg)
    with torch.no_grad():
        model.sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.mul_(prompt_pe_scale)
        if tie_decoder_qk:
            for module in model.sam_mask_decoder.modules():
                q, k = getattr(module, "q_proj", None), getattr(module, "k_proj", None)
                if q is not None and k is not None and q.weight.shape == k.weight.shape:
                    k.weight.copy_(q.weight)
                    k.bias.copy_(q.bias)
    return model


def prime_memory_attention(model, bias: float) -> None:
    """Start memory cross-attention local: equal constant query and key biases.

    With q = k = ``bias`` in every channel, the rotary encoding turns q . k into a
    sum of cosines of the query-key offset, largest at zero offset: each token of the
    current frame then attends to the memories at its own place, the right prior for
    following a slowly moving cell, instead of having to learn that from noise.
    Meant for memory attention that has not been trained yet (after image-only
    training it has seen no gradient).
    """
    import torch

    with torch.no_grad():
        for layer in model.memory_attention.layers:
            layer.cross_attn_image.q_proj.bias.fill_(bias)
            layer.cross_attn_image.k_proj.bias.fill_(bias)


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run; a run is reproduced by this record and its seed.

    Steps are optimizer steps, each on one clip (or one image in the image phase).
    Lengths are frames; learning rates per step.
    """

    steps: int = 2000
    image_steps: int = 0  # first steps on single frames (clip length 1), as SAM 2 starts from SAM
    # After that, every image_every-th step is again a single frame (0: never), as SAM 2
    # co-trains on images and videos; image steps are several times cheaper than clips.
    image_every: int = 0
    clip_length: int = 8
    max_objects: int = 3
    image_max_objects: int = 16  # objects per image in the image phase (SAM samples up to 64)
    lr: float = 5e-4
    encoder_lr: float | None = None  # None: the same as lr
    lr_end_factor: float = 0.1  # cosine decay to lr * this
    warmup_steps: int = 50
    weight_decay: float = 0.1
    layer_decay: float = 0.9  # lr factor per trunk block, counted from the top
    grad_clip: float = 1.0
    freeze_image_encoder: bool = False
    # prompts
    prob_mask_prompt: float = 0.5
    prob_box_given_points: float = 0.5
    max_init_cond_frames: int = 2
    max_frames_to_correct: int = 2
    correction_points: int = 7
    prob_click_from_gt: float = 0.1
    # loss weights (focal, dice, iou, object score)
    w_focal: float = 20.0
    w_dice: float = 1.0
    w_iou: float = 1.0
    w_object: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    # bookkeeping
    seed: int = 0
    checkpoint_every: int = 250
    log_every: int = 10
    val_clips: int = 4
    val_frames: int = 12
    val_seed: int = 900_000  # held-out synthetic seeds start here (training seeds are below)

    def __post_init__(self) -> None:
        for name in (
            "steps",
            "clip_length",
            "max_objects",
            "image_max_objects",
            "checkpoint_every",
            "log_every",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name}: must be a positive integer, got {value!r}")
        if isinstance(self.image_every, bool) or not (
            isinstance(self.image_every, int) and self.image_every >= 0
        ):
            raise InputError(f"image_every: must be an integer >= 0, got {self.image_every!r}")
        if not 0 <= self.image_steps <= self.steps:
            raise InputError(f"image_steps: must be in [0, steps], got {self.image_steps!r}")
        if not self.lr > 0:
            raise InputError(f"lr: must be positive, got {self.lr!r}")
        for name in ("prob_mask_prompt", "prob_box_given_points", "prob_click_from_gt"):
            if not 0 <= getattr(self, name) <= 1:
                raise InputError(f"{name}: must be a probability, got {getattr(self, name)!r}")


def is_image_step(cfg: TrainConfig, step: int) -> bool:
    """Whether 0-based ``step`` trains on one frame (image phase or co-training) or a clip."""
    if step < cfg.image_steps:
        return True
    return cfg.image_every > 0 and (step - cfg.image_steps) % cfg.image_every == cfg.image_every - 1
