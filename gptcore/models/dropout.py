"""Dropout with a mask made from raw random bytes.

Why: ``nn.Dropout`` on a CPU draws one Bernoulli sample per element, which cost 16% of a training step
of the write-up's model. Reading the mask off random 64-bit integers (eight mask bytes per draw) is about
six times cheaper. The price is resolution: the drop probability is rounded to a multiple of 1/256
(0.2 becomes 51/256 = 0.199), and kept values are scaled by 1/(1 - that probability), so the expected
activation is unchanged, exactly as with ``nn.Dropout``.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class ByteDropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.threshold = round(p * 256)  # a byte below this drops its element
        self.scale = 256 / (256 - self.threshold)

    @property
    def p(self) -> float:
        """The drop probability actually used."""
        return self.threshold / 256

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        n = x.numel()
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64, device=x.device)
        keep = words.view(torch.uint8)[:n].view(x.shape) >= self.threshold
        return x * keep * self.scale

    def extra_repr(self) -> str:
        return f"p={self.p:.4f}"
