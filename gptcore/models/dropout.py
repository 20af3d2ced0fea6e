"""Dropout that is cheap on a CPU: the mask is read off raw random bytes.

Why: ``nn.Dropout`` on a CPU draws one Bernoulli sample per element, a noticeable share of a training step
of the original write-up's model (docs/speed.md). Reading the mask off random 64-bit integers (eight mask
bytes per draw) is several times cheaper. The price is resolution: on a CPU the drop probability is rounded to a multiple of
1/256 (0.2 becomes 51/256 = 0.199), and kept values are scaled by 1/(1 - that probability), so the
expected activation is unchanged. On other devices torch's own dropout is faster (its kernel is fused),
so it is used there, at the exact probability.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Dropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.exact_p = p
        self.threshold = round(p * 256)  # a byte below this drops its element
        self.scale = 256 / (256 - self.threshold)

    @property
    def p(self) -> float:
        """The drop probability used on a CPU."""
        return self.threshold / 256

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.exact_p == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.exact_p, training=True)
        if self.threshold == 0:
            return x
        n = x.numel()
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64, device=x.device)
        keep = words.view(torch.uint8)[:n].view(x.shape) >= self.threshold
        return x * keep * self.scale

    def extra_repr(self) -> str:
        return f"p={self.exact_p} (cpu: {self.p:.4f})"
