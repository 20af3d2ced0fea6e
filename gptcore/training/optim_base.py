"""What every optimizer of ours shares: parameter groups, per-parameter state, and a saved form that is
torch's own.

Why not ``torch.optim.Optimizer``: the first one built in a process imports ``torch._dynamo`` (torch
wraps its methods to keep the compiler out), which costs about as long as importing torch itself, and a
short training run pays it on every start. The saved form is torch's (``state`` by parameter index,
``param_groups`` with the indices), so checkpoints written by torch's optimizers resume here and the
other way round.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch


def _as_groups(params: Iterable, defaults: dict[str, Any]) -> list[dict[str, Any]]:
    items = list(params)
    if not items:
        raise ValueError("an optimizer needs at least one parameter")
    groups = items if isinstance(items[0], dict) else [{"params": items}]
    built = []
    for group in groups:
        tensors = group["params"]
        tensors = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
        built.append({**defaults, **group, "params": tensors})
    seen = [id(p) for g in built for p in g["params"]]
    if len(seen) != len(set(seen)):
        raise ValueError("a parameter appears in more than one place in an optimizer's groups")
    return built


class GroupedOptimizer:
    """Parameter groups with their hyperparameters, state per parameter, zero_grad and torch's saved form.

    Subclasses implement ``step``."""

    def __init__(self, params: Iterable, defaults: dict[str, Any]):
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = _as_groups(params, self.defaults)
        self.state: dict[torch.Tensor, dict[str, Any]] = {}

    def step(self) -> None:
        raise NotImplementedError

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:
        """Torch's layout: parameters numbered in group order; the state holds references, as torch's does."""
        index = {id(p): i for i, p in enumerate(self._params())}
        groups = [{**{k: v for k, v in group.items() if k != "params"},
                   "params": [index[id(p)] for p in group["params"]]} for group in self.param_groups]
        state = {index[id(p)]: s for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Hyperparameters and state from ``saved``, which must describe groups of the same sizes."""
        groups = saved.get("param_groups") if isinstance(saved, dict) else None
        if not isinstance(groups, list) or len(groups) != len(self.param_groups):
            raise ValueError(f"the saved optimizer has a different number of parameter groups "
                             f"(expected {len(self.param_groups)})")
        if [len(g.get("params", ())) for g in groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("the saved optimizer's parameter groups have different sizes")
        params = self._params()
        self.state = {}
        for key, values in saved.get("state", {}).items():
            p = params[int(key)]
            self.state[p] = {name: self._placed(name, value, p) for name, value in values.items()}
        for group, old in zip(self.param_groups, groups):
            group.update({k: v for k, v in old.items() if k != "params"})

    @staticmethod
    def _placed(name: str, value: Any, param: torch.Tensor) -> Any:
        """A saved state value on its parameter's device and, for floating buffers, in its dtype; step
        counters live on the CPU in float32, as torch keeps them for its non-fused optimizers."""
        if not isinstance(value, torch.Tensor):
            return value
        if name == "step":
            return value.detach().to("cpu", torch.float32).clone()
        dtype = param.dtype if value.is_floating_point() else value.dtype
        return value.detach().to(param.device, dtype).clone()
