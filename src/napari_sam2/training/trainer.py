"""The training loop: one clip per step, AdamW with layer-wise decay, cosine schedule.

Reproducible by construction: every step draws its data and prompts from a
generator seeded by ``(seed, step)``, so a run resumed from a checkpoint takes
exactly the steps the uninterrupted run would have taken. Checkpoints hold the
model, the optimizer, the step and both configs, and are written atomically;
``model.pt`` beside them is the official format plus the architecture.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..files.atomic import atomic_path
from ..modeling.config import config_from_dict, config_to_dict
from ..modeling.sam2 import Sam2Model
from .config import TrainConfig, is_image_step
from .data import SyntheticClips, augment, choose_objects, to_tensors
from .rollout import plan_clip, rollout

CHECKPOINT = "last.pt"
MODEL = "model.pt"
LOG = "log.jsonl"


@dataclass(frozen=True)
class StepLog:
    """One logged step: the mean loss terms since the last log line."""

    step: int
    loss: float
    focal: float
    dice: float
    iou: float
    object: float
    lr: float
    seconds: float


def param_groups(model: Sam2Model, cfg: TrainConfig) -> list[dict]:
    """AdamW groups: no decay on biases, norms and embeddings; lr decayed per trunk block.

    The trunk's block i of n (counted from 1) gets lr * layer_decay ** (n - i), so the
    top block trains at the full rate; the patch embedding counts as block 0. The
    position embeddings keep the full rate, as in the reference recipe.
    """
    n_blocks = len(model.image_encoder.trunk.blocks)
    enc_lr = cfg.encoder_lr if cfg.encoder_lr is not None else cfg.lr
    groups: dict[tuple[float, float], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or "pos_embed" in name or name.endswith("_embed") or "token" in name
        wd = 0.0 if no_decay else cfg.weight_decay
        lr = cfg.lr
        if name.startswith("image_encoder."):
            lr = enc_lr
            if name.startswith("image_encoder.trunk."):
                parts = name.split(".")
                layer = int(parts[3]) + 1 if parts[2] == "blocks" else 0
                if "pos_embed" not in name:
                    lr = enc_lr * cfg.layer_decay ** (n_blocks - layer)
        groups.setdefault((lr, wd), []).append(p)
    return [
        {"params": ps, "lr": lr, "base_lr": lr, "weight_decay": wd}
        for (lr, wd), ps in groups.items()
    ]


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay from 1 to ``lr_end_factor``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.lr_end_factor + (1 - cfg.lr_end_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def _atomic_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:  # a stopped run never leaves half a checkpoint
        torch.save(obj, tmp)


def save_model(model: Sam2Model, path: Path, *, half: bool = False, extra: dict | None = None):
    """Write ``{"model": state_dict, "config": ...}``: the official format plus the architecture.

    ``half`` stores floating tensors as float16 (the loader widens them again).
    """
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    payload = {"model": sd, "config": config_to_dict(model.cfg)}
    payload.update(extra or {})
    _atomic_save(payload, Path(path))


def _sample_step(source, cfg: TrainConfig, step: int, image_size: int, rng):
    """A clip with at least one object on its first frame, ready for the model."""
    image_phase = is_image_step(cfg, step)
    for _ in range(20):
        clip = augment(source.sample(rng), rng)
        if image_phase:  # one frame, as SAM 2's first stage trains on images
            t = int(rng.integers(len(clip.labels)))
            clip = type(clip)(clip.frames[t : t + 1], clip.labels[t : t + 1])
        limit = cfg.image_max_objects if image_phase else cfg.max_objects
        ids = choose_objects(clip.labels[0], limit, rng)
        if ids:
            return to_tensors(clip, image_size, ids)
    raise InputError("data: 20 clips in a row had no object on their first frame")


def train(
    model: Sam2Model,
    out_dir: str | Path,
    cfg: TrainConfig | None = None,
    source=None,
    resume: bool = False,
    progress: Callable[[StepLog], None] | None = None,
    validate: Callable[[Sam2Model], dict] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str | torch.device = "cpu",
    until: int | None = None,
) -> Path:
    """Train ``model`` in place and write checkpoints to ``out_dir``; returns the model path.

    ``source`` has ``sample(rng) -> Clip``; default: fresh synthetic clips.
    ``resume`` continues from ``out_dir/last.pt`` (the same run, step for step).
    ``validate(model) -> dict`` runs at each checkpoint and is logged.
    ``should_stop()`` is polled between steps: a cancelled run writes nothing more
    and leaves earlier checkpoints as they were. ``until`` stops after that many
    steps of the schedule (which still spans ``cfg.steps``), for staged runs.
    """
    cfg = cfg or TrainConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    model.to(device).train()
    if cfg.freeze_image_encoder:
        for p in model.image_encoder.parameters():
            p.requires_grad_(False)
    opt = torch.optim.AdamW(param_groups(model, cfg), betas=(0.9, 0.999))
    source = source or SyntheticClips(cfg.clip_length, seed_base=0)
    start = 0
    if resume:
        start = _resume(model, opt, out / CHECKPOINT, cfg)
    log_path = out / LOG
    if not resume:
        log_path.write_text("", encoding="utf-8")
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2), encoding="utf-8")
    acc: list[list[float]] = []
    t_log = time.perf_counter()
    size = model.cfg.image_size
    for step in range(start, min(cfg.steps, until or cfg.steps)):
        if should_stop is not None and should_stop():
            break
        rng = np.random.default_rng([cfg.seed, step])
        torch.manual_seed(cfg.seed * 1_000_003 + step)
        clip = _sample_step(source, cfg, step, size, rng)
        plan = plan_clip(len(clip.masks), cfg, rng)
        factor = lr_factor(step, cfg)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * factor
        result = rollout(model, clip.images.to(device), clip.masks.to(device), plan, cfg, rng)
        loss = result.total()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        n = len(result.steps)
        acc.append(
            [float(loss.detach())]
            + [
                float(sum(getattr(s, k) for s in result.steps)) / n
                for k in ("focal", "dice", "iou", "object")
            ]
        )
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            mean = np.mean(acc, axis=0)
            entry = StepLog(
                step + 1, *map(float, mean), cfg.lr * factor, time.perf_counter() - t_log
            )
            _append(log_path, {"kind": "train", **asdict(entry)})
            if progress is not None:
                progress(entry)
            acc, t_log = [], time.perf_counter()
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            _checkpoint(model, opt, step + 1, cfg, out, validate, log_path)
    model.eval()
    return out / MODEL


def _checkpoint(model, opt, step, cfg, out: Path, validate, log_path: Path) -> None:
    _atomic_save(
        {
            "model": model.state_dict(),
            "config": config_to_dict(model.cfg),
            "optimizer": opt.state_dict(),
            "step": step,
            "train_config": asdict(cfg),
        },
        out / CHECKPOINT,
    )
    record = {"steps": step, "seed": cfg.seed, "focal_alpha": cfg.focal_alpha}
    record["focal_gamma"] = cfg.focal_gamma  # the mask loss, for fine-tuning with the same
    save_model(model, out / MODEL, extra={"provenance": record})
    if validate is not None:
        model.eval()
        with torch.no_grad():
            scores = validate(model)
        model.train()
        _append(log_path, {"kind": "val", "step": step, **scores})


def _resume(model, opt, path: Path, cfg: TrainConfig) -> int:
    if not path.is_file():
        raise InputError(f"resume: no checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = state.get("train_config", {})
    if saved and saved != asdict(cfg):
        diff = sorted(k for k in asdict(cfg) if saved.get(k) != asdict(cfg)[k])
        # Only the length of the run may change on resume.
        if set(diff) - {"steps", "checkpoint_every", "log_every"}:
            raise InputError(f"resume: the training config differs from the checkpoint's in {diff}")
    if config_from_dict(state["config"]) != model.cfg:
        raise InputError("resume: the checkpoint's architecture differs from the model's")
    model.load_state_dict(state["model"], strict=True)
    opt.load_state_dict(state["optimizer"])
    return int(state["step"])


def _append(path: Path, entry: dict) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


__all__ = [
    "StepLog",
    "param_groups",
    "lr_factor",
    "save_model",
    "train",
]
