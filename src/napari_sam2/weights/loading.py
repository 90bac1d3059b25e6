"""Building models and loading Meta's SAM 2 / SAM 2.1 checkpoints.

The official format is ``{"model": state_dict}``. The variant is recognised
from the keys and tensor shapes, so users never name it; loading is strict and
every failure is a one-line :class:`~napari_sam2.errors.CheckpointError`.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import CheckpointError, InputError
from ..modeling.config import VARIANTS, Sam2Config, config_from_dict, get_config, get_config_like
from ..modeling.sam2 import Sam2Model
from . import registry
from .registry import CheckpointEntry, ProgressCallback

_TRUNK = "image_encoder.trunk."


def build_model(
    variant: str = "sam2.1_hiera_tiny", image_size: int = 1024, device="cpu"
) -> Sam2Model:
    """A randomly initialised model of a released variant, in eval mode."""
    model = Sam2Model(get_config(variant, image_size))
    return model.to(resolve_device(device)).eval()


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """ "auto" picks cuda, then mps, then cpu; other names must be available."""
    name = str(device or "auto")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"device: unknown device {name!r} (use auto, cpu, cuda or mps)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device: 'cuda' was asked for but no CUDA GPU is available")
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise InputError("device: 'mps' was asked for but Apple MPS is not available")
    return dev


def normalize_state_dict(raw: object) -> dict[str, torch.Tensor]:
    """Unwrap a loaded checkpoint into a plain SAM 2 state dict (pure function).

    Accepts the official ``{"model": sd}`` and a bare state dict; strips the
    ``module.`` prefix that distributed training adds. Raises CheckpointError
    for anything that is not a mapping of names to tensors.
    """
    sd = raw.get("model", raw) if isinstance(raw, Mapping) else raw
    if not isinstance(sd, Mapping) or not sd:
        raise CheckpointError("checkpoint: file holds no state dict (expected {'model': {...}})")
    out = {}
    for key, value in sd.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"checkpoint: entry {key!r} is not a named tensor; not a model state dict"
            )
        out[key.removeprefix("module.")] = value
    return out


def infer_variant(sd: Mapping[str, torch.Tensor]) -> str:
    """Name of the released variant a state dict belongs to.

    The trunk's width and depth give the size; the SAM 2.1-only tensors tell
    SAM 2.1 from SAM 2.
    """
    if any(
        k.startswith("image_encoder.blocks.") or k.startswith("image_encoder.neck.0") for k in sd
    ):
        raise CheckpointError(
            "checkpoint: this is a SAM 1 (segment-anything) checkpoint; napari-sam2 needs SAM 2 or SAM 2.1 weights"
        )
    pos = sd.get(_TRUNK + "pos_embed")
    if pos is None or pos.ndim != 4:
        raise CheckpointError(
            "checkpoint: no Hiera image encoder found (missing image_encoder.trunk.pos_embed); not a SAM 2 checkpoint"
        )
    width = int(pos.shape[1])
    depth = len({k.split(".")[3] for k in sd if k.startswith(_TRUNK + "blocks.")})
    sam21 = "no_obj_embed_spatial" in sd or "obj_ptr_tpos_proj.weight" in sd
    for name, cfg in VARIANTS.items():
        if (cfg.trunk.embed_dim, cfg.trunk.depth, cfg.is_sam21) == (width, depth, sam21):
            return name
    raise CheckpointError(
        f"checkpoint: unknown SAM 2 trunk (width {width}, {depth} blocks); expected tiny, small, base_plus or large"
    )


def check_state_dict(model: Sam2Model, sd: Mapping[str, torch.Tensor]) -> None:
    """Raise CheckpointError naming missing, unexpected or mis-shaped tensors."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = [
        f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and sd[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_some(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_some(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes {_some(wrong)}")
    if problems:
        raise CheckpointError(
            f"checkpoint: does not match {model.cfg.name}: " + "; ".join(problems)
        )


def _some(items: list[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ZIP_MAGIC = b"PK\x03\x04"


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """torch.load a checkpoint file safely (weights only, on the CPU).

    Never runs code from the file: a pickle holding anything but tensors is
    refused, and the message never suggests loading it unsafely.
    """
    return normalize_state_dict(_read_raw(path))


def _read_raw(path: str | os.PathLike):
    """The object stored in a checkpoint file (weights only), or a one-line CheckpointError."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint: {path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint: no such file: {path}")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise CheckpointError(f"checkpoint: cannot read {path}: {exc.strerror or exc}") from None
    if head[:4] != _ZIP_MAGIC and head[:1] != b"\x80":
        raise CheckpointError(
            f"checkpoint: cannot read {path.name}: not a PyTorch checkpoint (no zip or pickle header)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol notes are not for users
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load fails in many ways on foreign or cut files
        raise CheckpointError(_load_failure(path, exc)) from exc
    return raw


def _load_failure(path: Path, exc: BaseException) -> str:
    """A one-line reason for a failed torch.load, without torch's advice to load unsafely."""
    text = _ANSI.sub("", str(exc)).strip()
    if "weights only load failed" in text.lower() or "weights_only" in text:
        return (
            f"checkpoint: {path.name} holds Python objects other than tensors; refused, since "
            "loading them could run code (not a SAM 2 checkpoint)"
        )
    reason = text.splitlines()[0] if text else type(exc).__name__
    if reason.isdigit() or len(reason) < 4:  # e.g. a bare KeyError '101'
        reason = f"{type(exc).__name__} {reason}"
    return f"checkpoint: cannot read {path.name} (truncated or damaged checkpoint): {reason[:200]}"


def checkpoint_config(raw, sd: Mapping[str, torch.Tensor], image_size: int | None) -> Sam2Config:
    """The architecture of a checkpoint.

    Models trained with napari-sam2 carry their config beside the weights
    (``{"model": ..., "config": ...}``); Meta's checkpoints do not, and their
    variant is inferred from the tensors. ``image_size`` None keeps the
    checkpoint's own size (1024 for Meta's).
    """
    data = raw.get("config") if isinstance(raw, Mapping) else None
    if data is None:
        return get_config(infer_variant(sd), 1024 if image_size is None else image_size)
    try:
        cfg = config_from_dict(data)
        return cfg if image_size is None else get_config_like(cfg, image_size)
    except InputError as exc:
        raise CheckpointError(f"checkpoint: its model config is not valid ({exc})") from None


def load_model(
    checkpoint: str | os.PathLike | Mapping,
    device: str | torch.device = "cpu",
    image_size: int | None = None,
    progress: ProgressCallback | None = None,
) -> Sam2Model:
    """Load SAM 2 / SAM 2.1 weights into a new model, in eval mode.

    ``checkpoint`` is a path to an official ``.pt`` file, a registry name such
    as ``"sam2.1_hiera_tiny"`` (downloaded, checked and cached on first use), or
    an already loaded state dict. The variant is inferred (or read from the
    config saved with a model trained here). ``image_size`` None keeps the
    checkpoint's own size (1024 for Meta's weights).
    ``progress(done_bytes, total_bytes)`` reports a download (``total_bytes``
    may be None). Raises :class:`CheckpointError` (or :class:`DownloadError`)
    with a one-line reason; no model is returned then.
    """
    if isinstance(checkpoint, Mapping):
        raw = checkpoint
    elif not isinstance(checkpoint, (str, os.PathLike)) or not str(checkpoint):
        raise CheckpointError(
            f"checkpoint: expected a .pt path, a registry name or a state dict, got {checkpoint!r}"
        )
    else:
        raw = _read_raw(_resolve_path(checkpoint, progress))
    sd = normalize_state_dict(raw)
    model = Sam2Model(checkpoint_config(raw, sd, image_size))
    check_state_dict(model, sd)
    model.load_state_dict(sd, strict=True)
    return model.to(resolve_device(device)).eval()


def structural_check(path: str | os.PathLike) -> None:
    """Raise unless ``path`` loads as a SAM 2 model (the download ``verify`` hook)."""
    load_model(Path(path))


def download_checkpoint(
    name: str | CheckpointEntry,
    progress: ProgressCallback | None = None,
    cache_dir: Path | str | None = None,
) -> Path:
    """Fetch a registry checkpoint into the cache, checked to load as a model; its path."""
    return registry.download(name, cache_dir=cache_dir, progress=progress, verify=structural_check)


def _resolve_path(checkpoint: str | os.PathLike, progress: ProgressCallback | None) -> Path:
    path = Path(checkpoint)
    if path.exists() or path.suffix in {".pt", ".pth", ".ckpt"} or os.sep in str(checkpoint):
        return path
    # Not a file: a registry name (downloaded and checked when missing).
    return registry.resolve_checkpoint(str(checkpoint), progress=progress, verify=structural_check)
