"""What a machine's matrix multiplies can do, and what a training step asks of them.

The share of the peak a training run reaches means the same on every host, where tokens/s do not: the
bfloat16 matrix-multiply peak of hosts of one kind can differ twofold. Both are measured in the same run
by ``gptcore bench``.
"""

from __future__ import annotations

import time

import torch

from ..config import ModelConfig
from ..device import synchronize
from ..models import build_model


def matmul_peak(device: torch.device = torch.device("cpu"), dtype: torch.dtype = torch.bfloat16,
                sizes: tuple[int, ...] = (1024, 2048, 4096), repeats: int = 3) -> dict:
    """The best FLOP/s of square ``n x n`` products (2 n^3 FLOPs each) at each size, and the best of all,
    with torch's current thread count."""
    by_size = {}
    for n in sizes:
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        a @ b  # warm-up: the kernel's first call
        best = float("inf")
        for _ in range(repeats):
            synchronize(device)
            t0 = time.perf_counter()
            a @ b
            synchronize(device)
            best = min(best, time.perf_counter() - t0)
        by_size[str(n)] = 2 * n ** 3 / best
    return {"dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads(),
            "flops_by_size": by_size, "peak_flops": max(by_size.values())}


def training_flops_per_token(config: ModelConfig) -> int:
    """FLOPs of one training token (forward and backward): 6 per parameter of every matrix the token goes
    through (all parameters but the position table, which is looked up, not multiplied), plus attention's
    scores and weighted sums, 12 x layers x width x context. This is nanoGPT's estimate: it counts the
    products the causal mask throws away, as the explicit attention path computes them."""
    model = build_model(config)
    looked_up = sum(p.numel() for name, p in model.named_parameters() if name.startswith("pos_emb."))
    matrices = sum(p.numel() for p in model.parameters()) - looked_up
    return 6 * matrices + 12 * config.n_layer * config.n_embd * config.block_size
