"""Training SAM 2 with the paper's recipe, in plain PyTorch (no Lightning, no Hydra).

* :mod:`.config` -- :class:`TrainConfig`, the recipe's knobs, and the architecture of
  the bundled ``sam2_micro_cells`` model.
* :mod:`.data` -- clip sources: fresh synthetic clips, saved sessions, CTC folders,
  TIFF stacks with label stacks.
* :mod:`.prompts` -- prompts simulated from ground truth (mask, click, box, corrections).
* :mod:`.rollout` -- one clip through the model frame by frame, through the memory bank
  exactly as at inference.
* :mod:`.loss` -- focal : dice : IoU L1 : object score = 20 : 1 : 1 : 1.
* :mod:`.trainer` -- the loop: AdamW, cosine schedule, checkpoints, ``resume``,
  validation J&F on held-out clips.
"""

from .config import TrainConfig, micro_cells_config
from .trainer import train

__all__ = ["TrainConfig", "micro_cells_config", "train"]
