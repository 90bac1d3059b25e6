"""Review and improve: where tracking probably failed, and how much annotation cost.

Qt-free. :mod:`.signals` measures each (frame, object) mask, :mod:`.score`
turns the measurements into one suspicion score, :mod:`.queue` orders the
suspicious pairs for review, :mod:`.effort` counts annotation effort, and
:mod:`.report` writes the effort tables across sessions. See docs/review.md.
"""

from .effort import EffortLog, EffortStats
from .queue import ReviewItem, ReviewQueue
from .score import SuspicionWeights, suspicion
from .signals import ObjectSignals, SignalTracker

__all__ = [
    "EffortLog",
    "EffortStats",
    "ObjectSignals",
    "ReviewItem",
    "ReviewQueue",
    "SignalTracker",
    "SuspicionWeights",
    "suspicion",
]
