"""Model configurations small enough for fast tests (random weights)."""

from __future__ import annotations

from napari_sam2.modeling.config import HieraConfig, Sam2Config

# A 4-block Hiera at 64 px: builds, trains and tracks in milliseconds.
TINY = Sam2Config(
    name="test_tiny",
    trunk=HieraConfig(
        embed_dim=8,
        stages=(1, 1, 1, 1),
        global_att_blocks=(3,),
        window_spec=(4, 4, 4, 4),
        window_pos_embed_bkg_spatial_size=(4, 4),
    ),
    image_size=64,
    d_model=64,
    memory_attention_layers=1,
)
