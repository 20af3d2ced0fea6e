"""Muon: momentum whose update is orthogonalised before it is applied, for the hidden weight matrices.

Why: an AdamW step on a weight matrix is dominated by a few directions; replacing the momentum matrix
by its nearest semi-orthogonal matrix (all singular values set to ~1) makes every direction move, which
learns more per token. The orthogonalisation is a quintic Newton-Schulz iteration run in bfloat16 (float32 where
that would be emulated), a
handful of small matrix products per weight. Embeddings, the output head, biases and norm gains stay on
AdamW (see ``gptcore.training.optimizers.make_optimizer``).
"""

from __future__ import annotations

import torch

from ..device import bfloat16_supported
from .optim_base import GroupedOptimizer

# coefficients of the quintic x -> a x + b x^3 + c x^5, chosen to push singular values towards 1 fast
_NS_COEFFS = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrices: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Approximately U V^T for each matrix = U S V^T in a (..., rows, cols) stack (singular values land
    roughly in [0.7, 1.2]). Stacking same-shaped matrices turns many tiny products into a few batched ones.
    ``dtype``: what the iteration runs in (float32 where the device would only emulate bfloat16)."""
    a, b, c = _NS_COEFFS
    x = matrices.to(dtype)
    wide = x.size(-2) <= x.size(-1)
    if not wide:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)  # spectral norm <= Frobenius norm, so now <= 1
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x if wide else x.mT).to(matrices.dtype)


class Muon(GroupedOptimizer):
    """SGD with Nesterov momentum, the update orthogonalised and scaled for the matrix's shape.

    Only for 2-D parameters. ``weight_decay`` is decoupled (as in AdamW) and scaled by the learning rate.
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, weight_decay: float = 0.0,
                 ns_steps: int = 5):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, ns_steps=ns_steps))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"Muon takes 2-D weight matrices only, got shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, beta = group["lr"], group["momentum"]
            by_shape: dict[tuple, list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault(tuple(p.shape), []).append(p)
            for (rows, cols), params in by_shape.items():
                grads = torch.stack([p.grad for p in params])
                for p in params:
                    if p not in self.state:
                        self.state[p] = {"momentum_buffer": torch.zeros_like(p)}
                bufs = [self.state[p]["momentum_buffer"] for p in params]
                torch._foreach_lerp_(bufs, list(grads.unbind(0)), 1 - beta)
                nesterov = grads.lerp_(torch.stack(bufs), beta)
                dtype = torch.bfloat16 if bfloat16_supported(nesterov.device) else torch.float32
                updates = orthogonalize(nesterov, group["ns_steps"], dtype)
                # a tall matrix's orthogonal update has smaller entries; restore their size
                scale = max(1.0, rows / cols) ** 0.5
                if group["weight_decay"]:
                    torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
                torch._foreach_add_(params, list(updates.unbind(0)), alpha=-lr * scale)
