"""``batched_nms`` and ``box_area``, the two box ops the reference's mask generator imports."""

from .boxes import batched_nms, box_area

__all__ = ["batched_nms", "box_area"]
