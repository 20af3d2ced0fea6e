"""The key-value cache: keys and values of every layer for the tokens seen so far.

Buffers are allocated once, at the model's full context, on the model's device, so a generation step
costs one copy and one slice per layer and tensor. ``length`` is how many positions are filled; a
caller may lower it to forget the newest positions again (speculative sampling does, for rejected
guesses). ``start`` is the position of the first slot: a model whose attention depends on relative
positions only (rotary or none) can ``slide`` a full cache past its oldest tokens instead of rebuilding
it, and may then hold a few more slots than its context (``extra``) for the tokens of one pass.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig


class KVCache:
    def __init__(self, config: ModelConfig, batch_size: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", extra: int = 0):
        head_dim = config.n_embd // config.n_head
        shape = (config.n_layer, batch_size, config.n_head, config.block_size + extra, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        # per-layer views made once
        self._k = [self.k[i] for i in range(config.n_layer)]
        self._v = [self.v[i] for i in range(config.n_layer)]
        self.length = 0
        self.start = 0

    @property
    def capacity(self) -> int:
        return self.k.size(3)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new keys/values after the filled positions and return all of them so far.

        ``length`` itself moves only when the whole model has run (``advance``), since every layer
        writes at the same positions."""
        end = self.length + k.size(2)
        if end > self.capacity:
            raise ValueError(f"KV cache holds {self.capacity} positions; {end} requested")
        k_all, v_all = self._k[layer][:, :, :end], self._v[layer][:, :, :end]
        k_all[:, :, self.length:].copy_(k)
        v_all[:, :, self.length:].copy_(v)
        return k_all, v_all

    def advance(self, n: int) -> None:
        self.length += n

    def slide(self, n: int) -> None:
        """Forget the ``n`` oldest positions; the others move to the front and keep their positions."""
        if not 0 <= n <= self.length:
            raise ValueError(f"cannot slide by {n}: the cache holds {self.length} positions")
        keep = self.length - n
        if n and keep:
            for buffer in (self.k, self.v):
                buffer[:, :, :, :keep] = buffer[:, :, :, n:self.length].clone()
        self.length, self.start = keep, self.start + n

    def reset(self) -> None:
        self.length = 0
        self.start = 0
