"""Compatibility path for the prompt-file API, now split by concept.

Prompt files live in :mod:`napari_sam2.files.prompt_files`, label TIFFs in
:mod:`napari_sam2.files.tiff`, and replaying prompts onto a session in
:mod:`napari_sam2.engine.replay`. New code should import from there.
"""

from .files.prompt_files import (
    BOXES_COLUMNS,
    BOXES_FILE,
    MASKS_FILE,
    POINTS_COLUMNS,
    POINTS_FILE,
    BoxRow,
    PointRow,
    Prompts,
    check_prompts,
    mask_frames,
    read_boxes_csv,
    read_mask_prompts,
    read_points_csv,
    read_prompts,
    select_frames,
    write_boxes_csv,
    write_points_csv,
    write_prompts,
)
from .files.tiff import label_tiff_options, read_label_tiff, read_tiff_array, write_label_tiff


def apply_prompts(session, prompts, frames=None):
    """See :func:`napari_sam2.engine.replay.apply_prompts` (imported on use: it needs torch)."""
    from .engine.replay import apply_prompts as apply

    return apply(session, prompts, frames)


__all__ = [
    "BOXES_COLUMNS",
    "BOXES_FILE",
    "MASKS_FILE",
    "POINTS_COLUMNS",
    "POINTS_FILE",
    "BoxRow",
    "PointRow",
    "Prompts",
    "apply_prompts",
    "check_prompts",
    "label_tiff_options",
    "mask_frames",
    "read_boxes_csv",
    "read_label_tiff",
    "read_mask_prompts",
    "read_points_csv",
    "read_prompts",
    "read_tiff_array",
    "select_frames",
    "write_boxes_csv",
    "write_label_tiff",
    "write_points_csv",
    "write_prompts",
]
