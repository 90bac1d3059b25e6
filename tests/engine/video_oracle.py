"""Drive the reference SAM2VideoPredictor and a VideoSession with the same calls."""

from __future__ import annotations

import numpy as np
import sam2.sam2_video_predictor as ref_video
import torch
import torch.nn.functional as F

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def moving_blobs(n_frames: int, size: int, seed: int = 0) -> np.ndarray:
    """(T, size, size, 3) uint8 frames with three drifting bright discs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    centres = rng.uniform(0.25, 0.75, (3, 2))
    speeds = rng.uniform(-0.02, 0.02, (3, 2))
    colours = rng.uniform(0.4, 1.0, (3, 3))
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    for t in range(n_frames):
        img = np.full((size, size, 3), 0.1)
        for c, v, col in zip(centres, speeds, colours):
            cy, cx = c + v * t
            img += col * (((yy - cy) ** 2 + (xx - cx) ** 2) < 0.012)[..., None]
        img += rng.normal(0, 0.03, img.shape)
        frames[t] = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    return frames


class RefSession:
    """The reference video predictor behind the VideoSession call signatures.

    Coordinates are converted from (row, col) to the reference's (x, y).
    """

    def __init__(self, model, frames: np.ndarray):
        self.model = model
        t, h, w, _ = frames.shape
        images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        s = model.image_size
        if (h, w) != (s, s):
            # The reference's own loader resizes JPEGs with PIL; both engines get the
            # same antialiased bilinear resize here, so the comparison is of the models.
            images = F.interpolate(images, (s, s), mode="bilinear", antialias=True)
        images = (images - IMAGENET_MEAN) / IMAGENET_STD
        original = ref_video.load_video_frames
        ref_video.load_video_frames = lambda **kw: (images, h, w)
        try:
            self.state = model.init_state(video_path="<in-memory>")
        finally:
            ref_video.load_video_frames = original
        self.num_frames = t

    def _result(self, out):
        frame, obj_ids, masks = out
        return frame, tuple(obj_ids), masks[:, 0].float().numpy()

    @torch.inference_mode()
    def add_points(self, frame, obj_id, points, labels, clear=True):
        xy = np.asarray(points, np.float32)[:, ::-1].copy()
        return self._result(
            self.model.add_new_points_or_box(
                self.state,
                frame,
                obj_id,
                points=xy,
                labels=np.asarray(labels, np.int32),
                clear_old_points=clear,
            )
        )

    @torch.inference_mode()
    def add_box(self, frame, obj_id, box):
        r0, c0, r1, c1 = box
        return self._result(
            self.model.add_new_points_or_box(
                self.state, frame, obj_id, box=np.array([c0, r0, c1, r1], np.float32)
            )
        )

    @torch.inference_mode()
    def add_mask(self, frame, obj_id, mask):
        return self._result(self.model.add_new_mask(self.state, frame, obj_id, mask))

    @torch.inference_mode()
    def remove_object(self, obj_id):
        _, updated = self.model.remove_object(self.state, obj_id)
        return [(f, m[:, 0].float().numpy()) for f, m in updated]

    def propagate(self, start_frame=None, reverse=False):
        with torch.inference_mode():
            for frame, obj_ids, masks in self.model.propagate_in_video(
                self.state, start_frame_idx=start_frame, reverse=reverse
            ):
                yield frame, tuple(obj_ids), masks[:, 0].float().numpy()


def fp32_memory(model):
    """Cast the reference's bf16-stored memories to fp32 before memory attention.

    On a CPU-only torch the reference otherwise crashes when an object's memory
    has no pointer tokens (its CUDA path gets by under autocast); this is what
    its own type promotion does whenever pointers are present.
    """
    forward = model.memory_attention.forward

    def patched(curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0):
        return forward(
            curr=curr,
            memory=memory.float(),
            curr_pos=curr_pos,
            memory_pos=memory_pos.float(),
            num_obj_ptr_tokens=num_obj_ptr_tokens,
        )

    model.memory_attention.forward = patched
    return model


def memoize_image_encoder(model, attr="forward_image"):
    """Cache image features per input image, so several scenarios share the cost."""
    compute = getattr(model, attr)
    cache = {}

    def cached(image):
        key = (image.shape, hash(image.cpu().numpy().tobytes()))
        if key not in cache:
            cache[key] = compute(image)
        return cache[key]

    setattr(model, attr, cached)
    return model
