"""Measure this machine's matrix-product rate (GFLOP/s), the basis of the speed floors.

python benchmarks/matmul_rate.py
"""

from __future__ import annotations

import time

import torch


def rate(n: int, dtype: torch.dtype, repeats: int = 5) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def main() -> None:
    print(f"threads: {torch.get_num_threads()}")
    for dtype in (torch.float32, torch.bfloat16):
        print(
            f"{str(dtype):15s} "
            + "  ".join(f"n={n}: {rate(n, dtype):6.0f}" for n in (1024, 2048, 4096))
        )


if __name__ == "__main__":
    main()
