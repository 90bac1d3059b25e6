"""One suspicion score in [0, 1] per (frame, object), from :class:`ObjectSignals`.

Each signal is first turned into a risk ``r`` in [0, 1] (0: nothing wrong):

=================  ======================================================
signal             risk
=================  ======================================================
predicted IoU p    ``1 - p``
object score s     ``1 - |2 sigmoid(s) - 1|`` (1 when the decoder is unsure
                   whether the object is there, 0 when it is sure either way)
stability q        ``1 - q``
area jump j        ``j`` (``|a - a_prev| / max(a, a_prev)``; a vanishing
                   or appearing mask gives 1)
centroid jump d    ``min(1, d / move_scale)`` (d in mask diameters)
fragmentation      ``1 - largest_share`` (the share of the mask outside
                   its largest connected piece)
disagreement g     ``g`` (``1 - IoU`` of the forward and backward masks)
overlap o          ``o`` (the share of the mask other objects' masks claim
                   too: a lost object latched onto a neighbour)
=================  ======================================================

and the risks are combined as a weighted noisy-OR::

    suspicion = 1 - prod_i (1 - w_i * r_i)

over the signals that exist for that (frame, object) (a missing one counts as
no risk). So one strong signal is enough to rank a mask high, several weak ones
add up, and the score stays in [0, 1] for weights in [0, 1]. The weights are
:class:`SuspicionWeights`; their defaults were fitted to true errors on
synthetic clips (docs/review.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ..errors import InputError
from .signals import ObjectSignals

__all__ = ["SuspicionWeights", "risks", "suspicion"]


@dataclass(frozen=True)
class SuspicionWeights:
    """Weights in [0, 1] of each risk in the noisy-OR, and the centroid-jump scale (diameters)."""

    # Fitted (benchmarks/fit_suspicion.py, seeds 940000-940003, bundled model):
    # docs/review.md.
    predicted_iou: float = 0.5
    object_score: float = 0.5
    stability: float = 1.0
    area_jump: float = 0.5
    centroid_jump: float = 0.0
    fragmentation: float = 0.5
    disagreement: float = 1.0
    overlap: float = 1.0
    move_scale: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "move_scale":
                if not value > 0:
                    raise InputError(f"move_scale: must be > 0, got {value}")
            elif not 0.0 <= value <= 1.0:
                raise InputError(f"{f.name}: weight must be in [0, 1], got {value}")


def _clip(x: float) -> float:
    return min(1.0, max(0.0, x))


def risks(s: ObjectSignals, move_scale: float = 1.0) -> dict[str, float]:
    """Each available signal of ``s`` as a risk in [0, 1], by weight name."""
    out: dict[str, float] = {}
    if s.predicted_iou is not None:
        out["predicted_iou"] = _clip(1.0 - s.predicted_iou)
    if s.object_score is not None:
        present = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, s.object_score))))
        out["object_score"] = _clip(1.0 - abs(2.0 * present - 1.0))
    if s.stability is not None:
        out["stability"] = _clip(1.0 - s.stability)
    if s.area_jump is not None:
        out["area_jump"] = _clip(s.area_jump)
    if s.centroid_jump is not None:
        out["centroid_jump"] = _clip(s.centroid_jump / move_scale)
    out["fragmentation"] = _clip(1.0 - s.largest_share)
    if s.disagreement is not None:
        out["disagreement"] = _clip(s.disagreement)
    out["overlap"] = _clip(s.overlap)
    return out


def suspicion(s: ObjectSignals, weights: SuspicionWeights | None = None) -> float:
    """The noisy-OR suspicion score of one (frame, object), in [0, 1] (see the module doc)."""
    w = weights or SuspicionWeights()
    keep = 1.0
    for name, r in risks(s, w.move_scale).items():
        keep *= 1.0 - getattr(w, name) * r
    return _clip(1.0 - keep)
