"""A GPT written from scratch: embeddings, a stack of transformer blocks, a final norm and an LM head.

Attention lives in ``attention.py`` and is the same code for training, the cached decode and the
attention maps. Generation keeps keys and values in a preallocated cache (``kv_cache.py``), and
``decode`` runs a few new tokens through the same computation with the weights gathered once.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..config import ModelConfig
from .attention import CausalSelfAttention, rope_tables, scaled_scores, self_attention
from .causal import causal_mask
from .dropout import Dropout
from .kv_cache import KVCache


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Attention then MLP, each with LayerNorm before (pre-norm) or after (post-norm) the residual add."""

    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.pre_norm = config.norm == "pre"
        self.residual = config.residual
        self.ln1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, attn_out: list | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None, window: int | None = None) -> torch.Tensor:
        x = self._sublayer(x, lambda h: self.attn(h, cache, attn_out, rope, window), self.ln1)
        return self._sublayer(x, self.mlp, self.ln2)

    def attention_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the attention sublayer reads from the residual stream ``x``: normalised first if pre-norm."""
        return self.ln1(x) if self.pre_norm else x

    def _sublayer(self, x: torch.Tensor, f, norm: nn.LayerNorm) -> torch.Tensor:
        if self.pre_norm:
            out = f(norm(x))
            return x + out if self.residual else out
        out = f(x)
        return norm(x + out if self.residual else out)


class GPT(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config.validate()
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd) if config.pos_emb == "learned" else None
        self.drop = Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        # post-norm blocks already end in a LayerNorm
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias) if config.norm == "pre" else nn.Identity()
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.pos_emb == "rope":  # the angles of positions 0 .. block_size - 1, made once (not saved)
            cos, sin = rope_tables(0, config.block_size, config.n_embd // config.n_head, config.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        if config.tie_embeddings:  # one matrix reads tokens in and scores them out (GPT-2, nanoGPT)
            self.lm_head.weight = self.tok_emb.weight
        self._decode_cache: tuple | None = None  # see _decode_weights
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # GPT-2: scale residual projections by depth
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
        attn_out: list | None = None,
        residuals: list | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for every position, and the mean cross-entropy if targets are given.

        With ``cache``, ``idx`` holds only the new tokens; with ``attn_out`` (a list), the attention
        probabilities of every layer, shaped (batch, head, query, key), are appended to it; with
        ``residuals`` (a list), the residual stream after the embeddings and after each block. A model with
        relative positions (``slides``) takes sequences longer than its context: each token then sees
        the ``block_size`` tokens up to itself (sliding-window attention).
        """
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        start = (cache.start if cache is not None else 0) + past  # the position of idx[:, 0]
        self.check_length(start + T)
        x = self.tok_emb(idx)
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(past, past + T, device=idx.device))
        x = self.drop(x)
        rope, window = self._rope(start, T), self._window()
        recompute = self.config.grad_checkpoint and torch.is_grad_enabled() and cache is None and attn_out is None
        if residuals is not None:
            residuals.append(x)
        for block in self.blocks:
            if recompute:  # the backward pass reruns the block, with the same random dropout masks
                x = checkpoint(block, x, None, None, rope, window, use_reentrant=False)
            else:
                x = block(x, cache, attn_out, rope, window)
            if residuals is not None:
                residuals.append(x)
        if cache is not None:
            cache.advance(T)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    @torch.inference_mode()
    def decode(self, tokens: list[int], cache: KVCache) -> torch.Tensor:
        """Logits (len(tokens), vocab_size) for new tokens at batch 1, appending their keys and values to
        ``cache``; the caller may roll ``cache.length`` back to drop some of them again.

        The same computation as ``forward`` for a pre-norm model with residuals, with the weights gathered
        once instead of looked up through the modules: at a few tokens, per-module calls cost a large
        share of a step (measured in docs/speed.md). Other variants go through ``forward``.
        """
        if (self.config.norm != "pre" or not self.config.residual or self.training
                or any(b.attn.head_mask is not None for b in self.blocks)):
            return self.forward(torch.tensor([tokens], device=self.tok_emb.weight.device), cache=cache)[0][0]
        pos, T = cache.length, len(tokens)
        self.check_length(pos + T)
        C, H = self.config.n_embd, self.config.n_head
        blocks, tok_emb, pos_emb, ln_f, lm_head = self._decode_weights()
        x = tok_emb[tokens]  # a list index works on every device
        if pos_emb is not None:
            x = x + pos_emb[pos:pos + T]
        x = x.unsqueeze(0)
        window = self._window()
        banded = window is not None and pos + T > window
        # the mask is the same for every layer: make it once
        hidden = causal_mask(T, pos + T, x.device, hidden=True, window=window) if T > 1 or banded else None
        rope = self._rope(cache.start + pos, T)
        for layer, (ln1, qkv, proj, ln2, fc, fc_proj, qk_norm) in enumerate(blocks):
            x = x + self_attention(F.layer_norm(x, (C,), *ln1), qkv, proj, H, qk_norm, cache, layer, hidden=hidden,
                                   rope=rope, window=window)
            x = x + F.linear(F.gelu(F.linear(F.layer_norm(x, (C,), *ln2), *fc)), *fc_proj)
        cache.advance(T)
        return F.linear(F.layer_norm(x[0], (C,), *ln_f), lm_head)

    def _decode_weights(self) -> tuple:
        """The tensors ``decode`` reads, gathered once. They are the parameters themselves, which loading
        weights (in place) and ``.to()`` keep current; a module that ``.to()`` replaced is noticed."""
        if self._decode_cache is None or self._decode_cache[1] is not self.tok_emb.weight:
            norm = lambda ln: (ln.weight, ln.bias, ln.eps)  # noqa: E731
            linear = lambda lin: (lin.weight, lin.bias)  # noqa: E731
            blocks = [(norm(b.ln1), linear(b.attn.qkv), linear(b.attn.proj), norm(b.ln2), linear(b.mlp.fc),
                       linear(b.mlp.proj), b.attn.qk_norm) for b in self.blocks]
            pos_emb = self.pos_emb.weight if self.pos_emb is not None else None
            self._decode_cache = (blocks, self.tok_emb.weight, pos_emb, norm(self.ln_f), self.lm_head.weight)
        return self._decode_cache

    @property
    def slides(self) -> bool:
        """Attention that depends on relative positions only (rotary, or no position embeddings) can run
        past the context as a sliding window, and its key-value cache can slide instead of being rebuilt;
        a table of absolute positions cannot."""
        return self.config.pos_emb != "learned"

    def check_length(self, end: int) -> None:
        """A ValueError when positions up to ``end`` don't fit the context (a model that slides has no limit)."""
        if not self.slides and end > self.config.block_size:
            raise ValueError(f"{end} tokens exceed the model's context of {self.config.block_size} (block_size)")

    def _window(self) -> int | None:
        return self.config.block_size if self.slides else None

    def _rope(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(cos, sin) of positions start .. start + length - 1, or None without rotary positions."""
        if self.config.pos_emb != "rope":
            return None
        if start + length <= self.config.block_size:
            return self.rope_cos[start:start + length], self.rope_sin[start:start + length]
        return rope_tables(start, length, self.config.n_embd // self.config.n_head, self.config.rope_base,
                           self.rope_cos.device)

    def new_cache(self, batch_size: int = 1, extra: int = 0) -> KVCache:
        """A cache for the full context, plus ``extra`` slots (useful only to a model that ``slides``)."""
        weight = self.tok_emb.weight
        return KVCache(self.config, batch_size, weight.dtype, weight.device, extra if self.slides else 0)

    @torch.no_grad()
    def attention_scores(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's scaled scores q·k/sqrt(head_dim) for ``idx``, before the mask and the softmax:
        a list of (batch, head, T, T) float32 tensors. Masked and softmaxed, they are :meth:`attention_maps`."""
        residuals: list[torch.Tensor] = []
        self.forward(idx, residuals=residuals)
        rope = self._rope(0, idx.size(1))
        return [scaled_scores(block.attention_input(x), (block.attn.qkv.weight, block.attn.qkv.bias),
                              self.config.n_head, self.config.qk_norm, rope)
                for block, x in zip(self.blocks, residuals)]

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Attention probabilities of every layer for ``idx``: a list of (batch, head, T, T) tensors."""
        maps: list[torch.Tensor] = []
        self.forward(idx, attn_out=maps)
        return maps
