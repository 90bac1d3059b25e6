"""Which number format the engine computes in, and whether this machine can.

``dtype="float32"`` is exact to the reference. ``"bfloat16"`` runs matrix
products and attention under autocast (weights and memories stay as they are);
it is the default on CUDA. On a CPU it is only allowed where the CPU has bf16
matrix instructions (AVX-512 BF16 or AMX): without them PyTorch emulates bf16
products, measured at about 1 GFLOP/s against about 150 GFLOP/s in float32 on
the project's 2-core AMD EPYC test machine.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from ..errors import InputError

DTYPES = ("float32", "bfloat16")


def cpu_has_bf16() -> bool:
    """True when oneDNN has native bf16 kernels for this CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bf16_possible(device_type: str) -> bool:
    """Whether ``dtype="bfloat16"`` is accepted on a device of this type."""
    return device_type == "cuda" or (device_type == "cpu" and cpu_has_bf16())


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """The compute dtype for ``dtype`` ("float32", "bfloat16" or None = device default).

    Raises :class:`InputError` naming ``dtype`` when it is unknown, or bf16 on a
    CPU without bf16 instructions or on a device without bf16 support.
    """
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise InputError(f"dtype: must be one of {', '.join(DTYPES)} or None, got {dtype!r}")
    if dtype == "float32" or bf16_possible(device.type):
        return getattr(torch, dtype)
    if device.type == "cpu":
        raise InputError(
            "dtype: 'bfloat16' needs a CPU with bf16 matrix instructions (AVX-512 BF16 or "
            "AMX); this CPU has none and would run about 100x slower; use 'float32'"
        )
    raise InputError(f"dtype: 'bfloat16' is not supported on {device.type}; use 'float32'")


def autocast(device: torch.device, dtype: torch.dtype):
    """A context running the model in ``dtype`` on ``device`` (no-op for float32)."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)
