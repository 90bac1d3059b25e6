"""Fine-tuning a loaded model on corrected sessions, writing a new checkpoint only when done.

This is what the widget's *Fine-tune on these sessions...* runs (in a worker
thread) and what ``napari-sam2 train --sessions DIR... --init MODEL`` runs from
the command line: the SAM 2 recipe of :func:`~napari_sam2.training.train`,
started from the current model, on clips cut from the sessions' frames and
labels.

The promises:

* the model given is never changed (a copy is trained), nor is its file;
* the new checkpoint is a **new** file (:func:`new_checkpoint_path` never
  names an existing one), written in one rename
  (:func:`~napari_sam2.files.atomic.atomic_path`) after the last step; a
  cancelled or failed run writes nothing there, and the training's own
  scratch files live in a temporary folder that is removed either way;
* the checkpoint carries its provenance (base model, sessions, steps, ...),
  read back by :func:`read_provenance` for the widget's model picker.

Qt-free.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import InputError

__all__ = [
    "FINETUNED_FOLDER",
    "FinetuneSettings",
    "describe",
    "finetune",
    "finetuned_checkpoints",
    "finetuned_folder",
    "new_checkpoint_path",
    "read_provenance",
    "session_clips",
]

FINETUNED_FOLDER = "finetuned"


@dataclass(frozen=True)
class FinetuneSettings:
    """The knobs of a fine-tuning run (the rest is the recipe's :class:`TrainConfig`).

    ``steps``: optimizer steps (one clip each); ``freeze_image_encoder``: None
    freezes it on a CPU (the encoder is most of the compute and of the weights)
    and trains it elsewhere; ``clip_length``: frames per clip; ``lr``: peak
    learning rate, lower than from scratch so that a few corrected sessions
    refine the model rather than overwrite it; ``seed``: the run's seed.
    """

    # 300 steps at 1e-4 raised the bundled model's J&F on an unseen condition (fast
    # motion) by 0.043 and 0.039 on two seed sets at <= 0.009 cost elsewhere; 200 steps
    # at 5e-5 moved it by -0.003 (docs/review.md).
    steps: int = 300
    freeze_image_encoder: bool | None = None
    clip_length: int = 8
    lr: float = 1e-4
    seed: int = 0
    # The mask loss: the paper's focal loss by default; a model trained with another
    # (sam2_micro_cells: cross-entropy, alpha 0.5, gamma 0) is best tuned with its own.
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0

    def __post_init__(self) -> None:
        for name in ("steps", "clip_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name}: must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise InputError(f"lr: must be positive, got {self.lr!r}")

    @classmethod
    def for_base(cls, source: str | os.PathLike | None, **overrides) -> FinetuneSettings:
        """Settings that tune with the mask loss the base checkpoint recorded, if it did.

        ``source``: the base model's file path or registry name. Training and
        fine-tuning here record ``focal_alpha`` / ``focal_gamma`` in the
        checkpoint's provenance; official checkpoints record nothing and get the
        paper's loss. ``overrides``: other fields (steps, ...).
        """
        return cls(**(recorded_loss(source) | overrides))

    def frozen_on(self, device) -> bool:
        """Whether the image encoder stays frozen on ``device``."""
        if self.freeze_image_encoder is not None:
            return bool(self.freeze_image_encoder)
        return str(getattr(device, "type", device)).split(":")[0] == "cpu"

    def train_config(self, device):
        from .config import TrainConfig

        return TrainConfig(
            steps=self.steps,
            clip_length=self.clip_length,
            lr=self.lr,
            warmup_steps=max(1, self.steps // 10),
            freeze_image_encoder=self.frozen_on(device),
            seed=self.seed,
            focal_alpha=self.focal_alpha,
            focal_gamma=self.focal_gamma,
            checkpoint_every=self.steps,
            log_every=1,
        )


def finetuned_folder() -> Path:
    """Where the widget keeps fine-tuned checkpoints: ``<cache>/finetuned``."""
    from ..weights.registry import cache_dir

    return cache_dir() / FINETUNED_FOLDER


def new_checkpoint_path(folder: str | os.PathLike, base: str, now: datetime | None = None) -> Path:
    """``folder/<base>-ft-<YYYYmmdd-HHMMSS>[-n].pt``: a name no file holds yet."""
    folder = Path(folder)
    stem = Path(str(base)).name.removesuffix(".pt").removesuffix(".pth") or "model"
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    path = folder / f"{stem}-ft-{stamp}.pt"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-ft-{stamp}-{n}.pt"
    return path


def session_clips(folders: Sequence[str | os.PathLike]) -> list:
    """One :class:`~napari_sam2.training.data.Clip` (frames and labels) per saved session folder.

    Each session must record its image file (sessions of images opened from a
    file do) and hold at least one labelled object.
    """
    from .data import session_stack

    clips = []
    for folder in folders:
        clip = session_stack(folder)
        check_clip(clip, str(folder))
        clips.append(clip)
    return clips


def check_clip(clip, where: str) -> None:
    """Refuse a stack without any labelled pixel (nothing to learn from)."""
    import numpy as np

    if not np.asarray(clip.labels).any():
        raise InputError(f"sessions: {where} holds no labelled objects")


def finetune(
    model,
    clips: Sequence,
    target: str | os.PathLike,
    settings: FinetuneSettings | None = None,
    provenance: dict | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path | None:
    """Fine-tune a copy of ``model`` on ``clips``; write it to ``target`` when every step ran.

    Args:
        model: a loaded :class:`~napari_sam2.modeling.sam2.Sam2Model` (left unchanged).
        clips: :class:`~napari_sam2.training.data.Clip` stacks, frames ``(T, H, W[, C])``
            and labels ``(T, H, W)``.
        target: the new checkpoint file; must not exist.
        settings: steps, encoder freezing, clip length, learning rate.
        provenance: recorded in the checkpoint (with ``steps``, ``seconds``,
            ``freeze_image_encoder`` and ``created`` added).
        progress: ``progress(step_done, steps, loss)`` after each step (from the
            calling thread).
        should_stop: polled between steps; True stops the run, and nothing is written.

    Returns the checkpoint path, or None when stopped.
    """
    from ..files.atomic import scratch_dir
    from .data import StackClips
    from .trainer import save_model, train

    settings = settings or FinetuneSettings()
    target = Path(target)
    if target.exists():
        raise InputError(f"target: {target} exists; a fine-tuned model never replaces a file")
    if not clips:
        raise InputError("sessions: choose at least one session with labels")
    for i, clip in enumerate(clips):
        check_clip(clip, f"stack {i}")
    target.parent.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    cfg = settings.train_config(device)
    work = copy.deepcopy(model)
    source = StackClips(list(clips), cfg.clip_length)
    done = [0]
    start = time.perf_counter()

    def step_done(entry) -> None:
        done[0] = entry.step
        if progress is not None:
            progress(entry.step, cfg.steps, entry.loss)

    with scratch_dir(target) as scratch:
        train(
            work,
            scratch,
            cfg,
            source=source,
            progress=step_done,
            should_stop=should_stop,
            device=device,
        )
        if done[0] < cfg.steps or (should_stop is not None and should_stop()):
            return None
        record = dict(provenance or {})
        record.update(
            steps=cfg.steps,
            freeze_image_encoder=cfg.freeze_image_encoder,
            focal_alpha=cfg.focal_alpha,  # the mask loss, so a later fine-tune keeps it
            focal_gamma=cfg.focal_gamma,
            seconds=round(time.perf_counter() - start, 1),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        if target.exists():  # another run took the name meanwhile
            raise InputError(f"target: {target} appeared during training; not replaced")
        save_model(work, target, extra={"provenance": record})
    return target


def recorded_loss(source: str | os.PathLike | None) -> dict[str, float]:
    """The mask loss a base checkpoint was trained with: ``focal_alpha`` /
    ``focal_gamma`` from its provenance, or {} (official checkpoints record none).

    ``source``: a checkpoint path or registry name. The widget's fine-tuning and
    ``napari-sam2 train --init MODEL`` both start from this, so the same base
    model is tuned with the same loss from either.
    """
    record = read_provenance(_checkpoint_file(source)) if source else None
    return {k: float(record[k]) for k in ("focal_alpha", "focal_gamma") if k in (record or {})}


def _checkpoint_file(source: str | os.PathLike) -> Path:
    """A checkpoint's file from a path or a registry name (the name's file may not exist)."""
    from ..weights import registry

    path = Path(str(source)).expanduser()
    if path.is_file() or str(source) not in registry.REGISTRY:
        return path
    return registry.checkpoint_path(str(source))


def read_provenance(path: str | os.PathLike) -> dict | None:
    """The provenance stored in a checkpoint written by :func:`finetune`; None if none or unreadable."""
    import torch

    try:
        raw = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a checkpoint torch can read: no provenance to show
        return None
    record = raw.get("provenance") if isinstance(raw, dict) else None
    return dict(record) if isinstance(record, dict) else None


def finetuned_checkpoints(
    folder: str | os.PathLike | None = None,
) -> list[tuple[Path, dict | None]]:
    """The ``.pt`` files of ``folder`` (default :func:`finetuned_folder`), newest first, with provenance."""
    folder = Path(folder) if folder is not None else finetuned_folder()
    if not folder.is_dir():
        return []
    files = [p for p in folder.glob("*.pt") if p.is_file() and not p.name.startswith(".")]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [(p, read_provenance(p)) for p in files]


def describe(provenance: dict | None) -> str:
    """One line for a tooltip: base model, sessions, steps."""
    if not provenance:
        return "fine-tuned checkpoint (provenance unknown)"
    base = provenance.get("base_model") or "unknown model"
    sessions = provenance.get("sessions") or []
    names = ", ".join(Path(str(s)).name or str(s) for s in sessions) or "no sessions recorded"
    steps = provenance.get("steps", "?")
    frozen = " (image encoder frozen)" if provenance.get("freeze_image_encoder") else ""
    when = provenance.get("created", "")
    return (
        f"fine-tuned from {Path(str(base)).name} on {len(sessions)} session(s): {names}; "
        f"{steps} steps{frozen}" + (f"; {when}" if when else "")
    )
