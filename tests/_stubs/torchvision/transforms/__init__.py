"""ToTensor, Resize and Normalize, as torchvision applies them to tensors."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ToTensor:
    """HWC uint8 array -> CHW float tensor in [0, 1]."""

    def __call__(self, pic):
        arr = np.asarray(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
        return t.float().div(255) if t.dtype == torch.uint8 else t.float()


class Resize(nn.Module):
    """Bilinear, antialiased resize of a CHW tensor (torchvision's tensor default)."""

    def __init__(self, size: list[int]):
        super().__init__()
        self.size = [int(s) for s in size]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.interpolate(
            x.unsqueeze(0), size=self.size, mode="bilinear", align_corners=False, antialias=True
        )
        return out.squeeze(0)


class Normalize(nn.Module):
    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
