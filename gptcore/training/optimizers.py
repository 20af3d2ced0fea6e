"""The optimizers a run uses: AdamW alone, or Muon for the blocks' weight matrices with AdamW for the rest."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import TrainConfig
from .adamw import AdamW
from .muon import Muon


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> "AdamW | torch.optim.AdamW | OptimizerPair":
    """AdamW with weight decay on matrices only (never biases or norms); with ``optimizer="muon"``, the
    blocks' weight matrices move to Muon and AdamW keeps the embeddings, the head and the vectors.

    On a GPU, AdamW is torch's fused kernel; elsewhere it is ours (``adamw``), the arithmetic of torch's
    multi-tensor one without the start-up cost of ``torch.optim``. Every parameter group carries
    an ``lr_scale``: the loop sets ``lr = schedule(step) * lr_scale``.
    """
    named = list(model.named_parameters())
    hidden = [p for n, p in named if cfg.optimizer == "muon" and p.dim() == 2 and n.startswith("blocks.")]
    taken = {id(p) for p in hidden}
    decay = [p for n, p in named if p.dim() >= 2 and id(p) not in taken]
    no_decay = [p for n, p in named if p.dim() < 2]
    on_gpu = bool(named) and named[0][1].device.type == "cuda"
    groups = [{"params": decay, "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0}]
    betas = (cfg.beta1, cfg.beta2)
    adamw = (torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, fused=True) if on_gpu
             else AdamW(groups, lr=cfg.lr, betas=betas))
    if not hidden:
        return adamw
    muon = Muon([{"params": hidden, "lr_scale": cfg.muon_lr / cfg.lr}], lr=cfg.muon_lr,
                weight_decay=cfg.weight_decay)
    return OptimizerPair(adamw, muon)


class OptimizerPair:
    """Two optimizers stepped as one, with the interface the training loop and resume use."""

    def __init__(self, *optimizers: "AdamW | torch.optim.AdamW | Muon"):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        # read afresh each time: load_state_dict replaces the optimizers' group dicts
        return [g for opt in self.optimizers for g in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> list[dict]:
        return [opt.state_dict() for opt in self.optimizers]

    def load_state_dict(self, states: list[dict]) -> None:
        if not isinstance(states, list) or len(states) != len(self.optimizers):
            raise ValueError(f"expected the states of {len(self.optimizers)} optimizers")
        for opt, state in zip(self.optimizers, states):
            opt.load_state_dict(state)
