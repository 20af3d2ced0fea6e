"""Causal self-attention, written once: the training forward, the cached decode and the attention maps
all run :func:`self_attention`, rotary positions included.

It takes its weights as plain tensors so that ``GPT.decode`` can call it without module dispatch; the
module :class:`CausalSelfAttention` only owns the parameters and passes them in. Three ways to compute the
same attention: an explicit one (scores, causal mask, softmax, weighted values), which can hand back its
probabilities and trains faster on a CPU in bfloat16; a fused one (``scaled_dot_product_attention``),
which picks flash kernels on a GPU and generates faster on a CPU; and a tiled one (FlashAttention's
algorithm written out in PyTorch, :mod:`gptcore.models.flash`), whose memory grows linearly with the
context. Which one runs is chosen in :meth:`CausalSelfAttention.path`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from .causal import causal_mask
from .dropout import Dropout
from .flash import tiled_attention
from .kv_cache import KVCache

PATHS = ("explicit", "fused", "tiled")


def rope_frequencies(head_dim: int, base: float) -> torch.Tensor:
    """(head_dim / 2,) float64: the angle pair i of a head turns by per position, base^(-2i / head_dim)."""
    return base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)


def rope_tables(start: int, length: int, head_dim: int, base: float,
                device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (length, head_dim / 2) of the rotary angles of positions start .. start + length - 1.

    Pair i of a head turns by position x base^(-2i / head_dim): fast turns for nearby detail, slow ones
    for distance. Angles are computed in float64, so a position in the thousands (a sliding window) is
    as exact as position 0."""
    inv_freq = rope_frequencies(head_dim, base)
    angles = torch.arange(start, start + length, dtype=torch.float64)[:, None] * inv_freq[None, :]
    return angles.cos().float().to(device), angles.sin().float().to(device)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[i], x[i + D/2]) of the last dimension by its angle: then the dot product of a
    query at position m and a key at position n depends on m - n only, and norms are unchanged."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, path: str = "explicit", dropout_p: float = 0.0,
           dropout: Callable[[torch.Tensor], torch.Tensor] | None = None,
           attn_out: list | None = None, hidden: torch.Tensor | None = None,
           window: int | None = None) -> torch.Tensor:
    """Causal attention of queries (B, H, T, D) over keys and values (B, H, S, D), S >= T; the queries
    are the last T positions. ``path`` is one of :data:`PATHS`. ``dropout_p`` drops attention weights on
    the fused and tiled paths, ``dropout`` on the explicit one; ``attn_out`` (a list) receives the
    probabilities and forces the explicit path. ``window``: each query sees only the last ``window`` keys
    up to itself (see :func:`causal_mask`). ``hidden`` is ``causal_mask(T, S, hidden=True, window=window)``
    made once by a caller that runs several layers."""
    T, S = q.size(-2), k.size(-2)
    banded = window is not None and S > window
    if path == "tiled" and attn_out is None:
        return tiled_attention(q, k, v, window, dropout_p)
    if path == "fused" and attn_out is None:
        mask = causal_mask(T, S, q.device, window=window) if (1 < T < S or banded) else None
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=1 < T == S and not banded,
                                              dropout_p=dropout_p)
    scores = (q @ k.transpose(-2, -1)).mul_(1.0 / math.sqrt(q.size(-1)))  # in place: autograd keeps q and k
    if T > 1 or banded:
        if hidden is None:
            hidden = causal_mask(T, S, q.device, hidden=True, window=window)
        scores.masked_fill_(hidden, float("-inf"))
    probs = scores.softmax(dim=-1)
    if attn_out is not None:
        attn_out.append(probs.detach())
    if dropout is not None:
        probs = dropout(probs)
    return probs @ v


def project_heads(x: torch.Tensor, qkv: tuple, n_head: int, qk_norm: bool,
                  rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, ...]:
    """Queries, keys and values of ``x`` (B, T, C), each (B, n_head, T, C / n_head); queries and keys
    normalised per head (``qk_norm``), then rotated (``rope``)."""
    B, T, C = x.shape
    heads = F.linear(x, *qkv).view(B, T, 3, n_head, C // n_head).permute(2, 0, 3, 1, 4)
    q, k, v = heads.unbind(0)
    if qk_norm or rope is not None:  # queries and keys together: normalised per head, then rotated
        qk = F.rms_norm(heads[:2], (C // n_head,)) if qk_norm else heads[:2]
        q, k = (rotate(qk, *rope) if rope is not None else qk).unbind(0)
    return q, k, v


def scaled_scores(x: torch.Tensor, qkv: tuple, n_head: int, qk_norm: bool,
                  rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """(B, n_head, T, T) every query's dot product with every key over sqrt(head_dim), before the causal
    mask and the softmax: what :func:`attend` turns into weights, for looking inside (float32)."""
    q, k, _ = project_heads(x, qkv, n_head, qk_norm, rope)
    return (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(q.size(-1))


def self_attention(x: torch.Tensor, qkv: tuple, proj: tuple, n_head: int, qk_norm: bool,
                   cache: KVCache | None = None, layer: int = 0, path: str = "explicit", dropout_p: float = 0.0,
                   dropout: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   attn_out: list | None = None, hidden: torch.Tensor | None = None,
                   rope: tuple[torch.Tensor, torch.Tensor] | None = None, window: int | None = None,
                   head_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head causal self-attention of ``x`` (B, T, C) given ``qkv`` and ``proj`` as (weight, bias).

    With ``cache``, ``x`` holds only the new positions: their keys and values are appended to the cache
    and the queries attend over everything cached so far. ``hidden``: see :func:`attend`. ``rope``: the
    (cos, sin) of the new positions (:func:`rope_tables`); keys are cached already rotated. ``window``:
    sliding-window attention (:func:`causal_mask`). ``head_mask`` (n_head,), or (B, n_head) for one mask per
    batch row: each head's output is multiplied by its entry before the heads are mixed (0 switches a head
    off, for ablations)."""
    B, T, C = x.shape
    q, k, v = project_heads(x, qkv, n_head, qk_norm, rope)
    if cache is not None:
        k, v = cache.update(layer, k, v)
    y = attend(q, k, v, path, dropout_p, dropout, attn_out, hidden, window)
    if head_mask is not None:
        y = y * head_mask.to(y.dtype).view(-1, n_head, 1, 1)
    return F.linear(y.transpose(1, 2).reshape(B, T, C), *proj)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head = config.n_head
        self.attention = config.attention
        self.dropout = config.dropout
        self.qk_norm = config.qk_norm
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = Dropout(config.dropout)
        self.resid_dropout = Dropout(config.dropout)
        self.head_mask: torch.Tensor | None = None  # (n_head,) or (B, n_head) weights of the heads' outputs

    def path(self, x: torch.Tensor) -> str:
        """``auto``: explicit only for training on a CPU, where it is faster in bfloat16 (docs/speed.md);
        fused everywhere else, which on a GPU means flash kernels. Otherwise the configured path."""
        if self.attention != "auto":
            return self.attention
        return "explicit" if torch.is_grad_enabled() and x.device.type == "cpu" else "fused"

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, attn_out: list | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None, window: int | None = None) -> torch.Tensor:
        y = self_attention(x, (self.qkv.weight, self.qkv.bias), (self.proj.weight, self.proj.bias), self.n_head,
                           self.qk_norm, cache, self.layer, self.path(x),
                           self.dropout if self.training else 0.0, self.attn_dropout, attn_out, rope=rope,
                           window=window, head_mask=self.head_mask)
        return self.resid_dropout(y)
