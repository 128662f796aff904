"""The host's speed, printed beside training times: these CPUs differ by about 3x.

The figure is what `make bench` reports as its square roofline: the median rate of an fp32
2048 x 2048 x 2048 torch matmul at the current thread count.
"""

from __future__ import annotations

import statistics
import time

import torch

SQUARE = 2048


def matmul_gflops(size: int = SQUARE, repeats: int = 5) -> float:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(size, size, generator=gen), torch.rand(size, size, generator=gen)
    out = torch.empty(size, size)
    torch.matmul(a, b, out=out)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9
