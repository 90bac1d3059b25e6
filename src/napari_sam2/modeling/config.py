"""Model configuration: one frozen record per released SAM 2 / SAM 2.1 variant.

The dataclass defaults are the configuration. All eight released checkpoints
share the same heads (prompt encoder, mask decoder, memory encoder, memory
attention); they differ only in the Hiera trunk and in four SAM 2.1 tracking
flags, so only those are fields here. ``image_size`` can be changed with
:func:`dataclasses.replace` (the paper ablates 512 / 768 / 1024); every grid
(RoPE, position encodings, mask sizes) follows it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from ..errors import InputError


@dataclass(frozen=True)
class HieraConfig:
    """Hiera image-encoder trunk.

    ``stages`` counts blocks per stage; the width doubles and the resolution
    halves (by query max-pooling) at each stage change. ``window_spec`` is the
    attention window side per stage, in tokens; blocks listed in
    ``global_att_blocks`` attend globally instead.
    """

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 7, 2)
    global_att_blocks: tuple[int, ...] = (5, 7, 9)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)
    q_pool: int = 3

    @property
    def stage_dims(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2**i for i in range(len(self.stages)))

    @property
    def depth(self) -> int:
        return sum(self.stages)


@dataclass(frozen=True)
class Sam2Config:
    """A complete SAM 2 model: trunk, image size and tracking behaviour.

    The defaults are those of the video predictor that Meta's ``build_sam2_video_predictor``
    builds (dynamic multimask via stability, binarised masks from point prompts
    for the memory encoder).
    """

    name: str = "sam2.1_hiera_tiny"
    trunk: HieraConfig = field(default_factory=HieraConfig)
    image_size: int = 1024
    d_model: int = 256  # width of FPN features, prompts and memory attention
    mem_dim: int = 64  # width of stored memories
    num_maskmem: int = 7  # the conditioning frames + 6 previous frames
    max_obj_ptrs_in_encoder: int = 16
    memory_attention_layers: int = 4
    # SAM 2.1 flags (all False for SAM 2).
    no_obj_embed_spatial: bool = True
    add_tpos_enc_to_obj_ptrs: bool = True
    proj_tpos_enc_in_obj_ptrs: bool = True
    use_signed_tpos_enc_to_obj_ptrs: bool = True
    # Frames tracked without a prompt choose among three candidate masks by predicted
    # IoU (True in every official config), or take the single-mask output (False).
    multimask_output_for_tracking: bool = True
    # Single-mask output falls back to the best multimask output when unstable.
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    binarize_mask_from_pts_for_mem_enc: bool = True
    # Mask probabilities fed to the memory encoder are sigmoid * scale + bias.
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0

    @property
    def backbone_stride(self) -> int:
        return 16

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid, in tokens (64 at 1024 px)."""
        return self.image_size // self.backbone_stride

    @property
    def low_res_size(self) -> int:
        """Side of the decoder's low-resolution mask logits (256 at 1024 px)."""
        return self.image_size // 4

    @property
    def is_sam21(self) -> bool:
        return self.no_obj_embed_spatial


_TINY = HieraConfig()
_SMALL = HieraConfig(stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13))
_BASE_PLUS = HieraConfig(
    embed_dim=112,
    num_heads=2,
    stages=(2, 3, 16, 3),
    global_att_blocks=(12, 16, 20),
    window_pos_embed_bkg_spatial_size=(14, 14),
)
_LARGE = HieraConfig(
    embed_dim=144,
    num_heads=2,
    stages=(2, 6, 36, 4),
    global_att_blocks=(23, 33, 43),
    window_spec=(8, 4, 16, 8),
    window_pos_embed_bkg_spatial_size=(7, 7),
)
_SAM2_FLAGS = dict(
    no_obj_embed_spatial=False,
    add_tpos_enc_to_obj_ptrs=False,
    proj_tpos_enc_in_obj_ptrs=False,
    use_signed_tpos_enc_to_obj_ptrs=False,
)

VARIANTS: dict[str, Sam2Config] = {
    "sam2.1_hiera_tiny": Sam2Config("sam2.1_hiera_tiny", _TINY),
    "sam2.1_hiera_small": Sam2Config("sam2.1_hiera_small", _SMALL),
    "sam2.1_hiera_base_plus": Sam2Config("sam2.1_hiera_base_plus", _BASE_PLUS),
    "sam2.1_hiera_large": Sam2Config("sam2.1_hiera_large", _LARGE),
    "sam2_hiera_tiny": Sam2Config("sam2_hiera_tiny", _TINY, **_SAM2_FLAGS),
    "sam2_hiera_small": Sam2Config("sam2_hiera_small", _SMALL, **_SAM2_FLAGS),
    "sam2_hiera_base_plus": Sam2Config("sam2_hiera_base_plus", _BASE_PLUS, **_SAM2_FLAGS),
    "sam2_hiera_large": Sam2Config("sam2_hiera_large", _LARGE, **_SAM2_FLAGS),
}


def _check_image_size(image_size) -> int:
    if not isinstance(image_size, int) or image_size < 64 or image_size % 32:
        raise InputError(f"image_size: must be a multiple of 32 and >= 64, got {image_size!r}")
    return image_size


def get_config_like(cfg: Sam2Config, image_size: int) -> Sam2Config:
    """``cfg`` at another input size (every grid follows it)."""
    return replace(cfg, image_size=_check_image_size(image_size))


def get_config(variant: str, image_size: int = 1024) -> Sam2Config:
    """Return the config of a released variant, e.g. ``"sam2.1_hiera_tiny"``.

    ``image_size`` (pixels, a multiple of 32 so that every stage grid is whole)
    replaces the released 1024.
    """
    if variant not in VARIANTS:
        known = ", ".join(VARIANTS)
        raise InputError(f"variant: unknown SAM 2 variant {variant!r} (known: {known})")
    return get_config_like(VARIANTS[variant], image_size)


def config_to_dict(cfg: Sam2Config) -> dict:
    """A plain dict (str, int, float, bool and lists) of a config, for checkpoints."""

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return plain(asdict(cfg))


def config_from_dict(data) -> Sam2Config:
    """The inverse of :func:`config_to_dict`; unknown or missing fields are an InputError."""
    if not isinstance(data, dict) or not isinstance(data.get("trunk"), dict):
        raise InputError("config: expected a dict with a 'trunk' dict")

    def build(cls, values: dict):
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise InputError(f"config: unknown {cls.__name__} fields {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    try:
        trunk = build(HieraConfig, data["trunk"])
        return build(Sam2Config, {**data, "trunk": trunk})
    except TypeError as exc:
        raise InputError(f"config: {exc}") from None
