"""Single-image prompting: ``ImagePredictor``.

Coordinates are (row, col) in image pixels; a box is (row0, col0, row1, col1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..modeling.sam2 import Sam2Model
from .preprocess import as_channels_last, choose_intensity, to_model_input, to_unit_rgb
from .prompts import PointPrompt, box_to_points, check_points, points_to_model


class ImagePredictor:
    """Embed one image once, then predict masks for many prompts quickly.

    >>> predictor = ImagePredictor(model)
    >>> predictor.set_image(image)          # (H, W) or (H, W, C), any real dtype
    >>> masks, scores, logits = predictor.predict(points=[(120, 80)], labels=[1])
    """

    def __init__(self, model: Sam2Model) -> None:
        self.model = model
        self._feats = None
        self._hw: tuple[int, int] | None = None

    @property
    def is_image_set(self) -> bool:
        return self._feats is not None

    @torch.inference_mode()
    def set_image(
        self,
        image: np.ndarray,
        contrast_limits: Sequence[float] | None = None,
        channel_axis: int | None = None,
    ) -> None:
        """Compute and keep the embedding of ``image`` ((H, W) or (H, W, C)).

        8-bit RGB is scaled exactly as the reference predictor does; other data
        by ``contrast_limits`` or robust percentiles.
        """
        hwc = as_channels_last(np.asarray(image), channel_axis)
        if hwc.shape[0] < 2 or hwc.shape[1] < 2:
            raise InputError(f"image: too small, shape {np.shape(image)}")
        intensity = choose_intensity(hwc, contrast_limits)
        x = to_model_input(to_unit_rgb(hwc, intensity), self.model.cfg.image_size)
        feats = self.model.encode_image(x.to(self.model.device))
        # The image predictor always sees "no memory" features.
        feats.fpn[2] = feats.fpn[2] + self.model.no_mem_embed.view(1, -1, 1, 1)
        self._feats = feats
        self._hw = hwc.shape[:2]

    @torch.inference_mode()
    def predict(
        self,
        points=None,
        labels=None,
        box=None,
        mask_input=None,
        multimask: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for one object.

        points: (N, 2) (row, col); labels: (N,) 1 positive / 0 negative; box:
        (row0, col0, row1, col1); mask_input: (S/4, S/4) logits from a previous
        call. Returns masks (K, H, W) bool, scores (K,), low-res logits
        (K, S/4, S/4) clipped to [-32, 32]; K = 3 with ``multimask`` else 1.
        """
        if self._feats is None:
            raise InputError("image: call set_image() before predict()")
        h, w = self._hw
        prompt = PointPrompt.empty()
        if box is not None:
            prompt = box_to_points(box, (h, w))
        if points is not None or labels is not None:
            prompt = prompt.concat(check_points(points, labels, (h, w)))
        if len(prompt) == 0 and mask_input is None:
            raise InputError("points: give at least one point, a box or a mask_input")
        model, dev = self.model, self.model.device
        xy = labels_t = None
        if len(prompt):
            xy, labels_t = points_to_model(prompt, (h, w), model.cfg.image_size, dev)
        mask_t = self._mask_input(mask_input)
        enc = model.sam_prompt_encoder
        sparse, dense = enc(xy, labels_t, mask_t)
        feats = self._feats
        high_res = (feats.fpn[0], feats.fpn[1])
        out = model.sam_mask_decoder(
            feats.fpn[2], high_res, enc.dense_pe(), sparse, dense, multimask=multimask
        )
        masks = F.interpolate(out.masks, (h, w), mode="bilinear", align_corners=False) > 0
        low = out.masks.clamp(-32.0, 32.0)
        return (
            masks[0].cpu().numpy(),
            out.ious[0].float().cpu().numpy(),
            low[0].float().cpu().numpy(),
        )

    def _mask_input(self, mask_input) -> torch.Tensor | None:
        if mask_input is None:
            return None
        size = self.model.cfg.low_res_size
        m = torch.as_tensor(np.asarray(mask_input, dtype=np.float32))
        while m.ndim > 2 and m.shape[0] == 1:
            m = m[0]
        if m.shape != (size, size):
            raise InputError(
                f"mask_input: expected low-res logits of shape ({size}, {size}), got {tuple(np.shape(mask_input))}"
            )
        return m[None, None].to(self.model.device)
