"""Box operations as torchvision defines them, for (N, 4) (x0, y0, x1, y1) tensors.

Written independently of napari_sam2's own NMS (a plain loop over pairs), so that
the parity test of the mask generator compares two implementations.
"""

import torch


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    w = (torch.minimum(a[2], b[2]) - torch.maximum(a[0], b[0])).clamp(min=0)
    h = (torch.minimum(a[3], b[3]) - torch.maximum(a[1], b[1])).clamp(min=0)
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices kept, by decreasing score; torchvision sorts stably, so ties keep input order."""
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    boxes = boxes.double()
    kept: list[int] = []
    for i in order:
        if all(not bool(_iou(boxes[i], boxes[k]) > iou_threshold) for k in kept):
            kept.append(i)
    return torch.tensor(kept, dtype=torch.int64)


def batched_nms(boxes, scores, idxs, iou_threshold: float) -> torch.Tensor:
    """NMS run separately within each category of ``idxs``; kept indices by decreasing score."""
    kept = []
    for cat in torch.unique(idxs).tolist():
        members = torch.nonzero(idxs == cat)[:, 0]
        kept.append(members[nms(boxes[members], scores[members], iou_threshold)])
    if not kept:
        return torch.zeros(0, dtype=torch.int64)
    kept = torch.cat(kept)
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]
