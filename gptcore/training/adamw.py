"""AdamW on the CPU, the same arithmetic as torch's multi-tensor AdamW, step for step and bit for bit.

Why our own: see ``optim_base``; a run's results must not change, so ``tests/test_optimizers.py`` holds
every step to torch's ``AdamW(foreach=True)``.
"""

from __future__ import annotations

from typing import Iterable

import torch

from .optim_base import GroupedOptimizer


class AdamW(GroupedOptimizer):
    """Adam with decoupled weight decay (scaled by the learning rate), moments kept per parameter."""

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def _moments(self, params: list[torch.Tensor]) -> tuple[list, list, list]:
        for p in params:
            if p not in self.state:
                self.state[p] = {"step": torch.tensor(0.0),
                                 "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                 "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        states = [self.state[p] for p in params]
        return [s["step"] for s in states], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update(group, params, [p.grad for p in params])

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        steps, exp_avgs, exp_avg_sqs = self._moments(params)
        torch._foreach_add_(steps, torch.tensor(1.0), alpha=1.0)
        if decay != 0:
            torch._foreach_mul_(params, 1 - lr * decay)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        counts = [s.item() for s in steps]
        step_sizes = [(lr / (1 - beta1 ** n)) * -1 for n in counts]
        denoms = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denoms, [(1 - beta2 ** n) ** 0.5 for n in counts])
        torch._foreach_add_(denoms, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denoms, step_sizes)
