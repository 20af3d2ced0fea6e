"""A GPT written from scratch: embeddings, a stack of transformer blocks, a final norm and an LM head.

Attention has two interchangeable paths: an explicit one (scores, causal mask, softmax, weighted values)
that can hand back its probabilities for visualisation, and a fused one
(``F.scaled_dot_product_attention``). On a CPU the explicit one trains faster and the fused one
generates faster, so ``attention="auto"`` uses each where it wins (see docs/LOG.md).
Generation uses a preallocated key-value cache, and ``decode`` runs a few new tokens as plain tensor ops.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from .dropout import ByteDropout


class KVCache:
    """Keys and values of every layer for the tokens seen so far, in preallocated buffers."""

    def __init__(self, config: ModelConfig, batch_size: int, dtype: torch.dtype = torch.float32):
        head_dim = config.n_embd // config.n_head
        shape = (config.n_layer, batch_size, config.n_head, config.block_size, head_dim)
        self.k = torch.zeros(shape, dtype=dtype)
        self.v = torch.zeros(shape, dtype=dtype)
        # per-layer views made once: a decode step then costs one copy and one slice per tensor
        self._k = [self.k[i] for i in range(config.n_layer)]
        self._v = [self.v[i] for i in range(config.n_layer)]
        self.length = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new keys/values and return all of them so far."""
        end = self.length + k.size(2)
        if end > self.k.size(3):
            raise ValueError(f"KV cache holds {self.k.size(3)} positions; {end} requested")
        k_all, v_all = self._k[layer][:, :, :end], self._v[layer][:, :, :end]
        k_all[:, :, self.length:].copy_(k)
        v_all[:, :, self.length:].copy_(v)
        return k_all, v_all

    def reset(self) -> None:
        self.length = 0


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head = config.n_head
        self.attention = config.attention
        self.dropout = config.dropout
        self.qk_norm = config.qk_norm
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.attn_dropout = ByteDropout(config.dropout)
        self.resid_dropout = ByteDropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, attn_out: list | None = None) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.qk_norm:  # queries and keys in one call
            q, k = F.rms_norm(qkv[:2], (qkv.size(-1),)).unbind(0)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.update(self.layer, k, v)
        S = k.size(2)
        explicit = self.attention == "explicit" or (self.attention == "auto" and torch.is_grad_enabled())
        if explicit or attn_out is not None:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
            if T > 1:  # query i (at absolute position past + i) may look at keys 0 .. past + i
                mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=past)
                scores = scores.masked_fill(~mask, float("-inf"))
            probs = scores.softmax(dim=-1)
            if attn_out is not None:
                attn_out.append(probs.detach())
            y = self.attn_dropout(probs) @ v
        else:
            mask = None
            if past and T > 1:
                mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=(past == 0 and T > 1),
                dropout_p=self.dropout if self.training else 0.0,
            )
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = ByteDropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Attention then MLP, each with LayerNorm before (pre-norm) or after (post-norm) the residual add."""

    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.pre_norm = config.norm == "pre"
        self.residual = config.residual
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config, layer)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, attn_out: list | None = None) -> torch.Tensor:
        x = self._sublayer(x, lambda h: self.attn(h, cache, attn_out), self.ln1)
        return self._sublayer(x, self.mlp, self.ln2)

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
        self.drop = ByteDropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        # post-norm blocks already end in a LayerNorm
        self.ln_f = nn.LayerNorm(config.n_embd) if config.norm == "pre" else nn.Identity()
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
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
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for every position, and the mean cross-entropy if targets are given.

        With ``cache``, ``idx`` holds only the new tokens; with ``attn_out`` (a list), the attention
        probabilities of every layer, shaped (batch, head, query, key), are appended to it.
        """
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of {past + T} tokens exceeds block_size {self.config.block_size}")
        x = self.tok_emb(idx)
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(past, past + T, device=idx.device))
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, cache, attn_out)
        if cache is not None:
            cache.length += T
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    @torch.inference_mode()
    def decode(self, tokens: list[int], cache: KVCache) -> torch.Tensor:
        """Logits (len(tokens), vocab_size) for new tokens at batch 1, appending their keys and values to
        ``cache``; the caller may roll ``cache.length`` back to drop some of them again.

        The same computation as ``forward`` for a pre-norm model, written as plain tensor ops: at a few
        tokens, per-module calls and the fused kernel's setup cost most of a step (docs/LOG.md).
        Other variants go through ``forward``.
        """
        if self.config.norm != "pre" or not self.config.residual or self.training:
            return self.forward(torch.tensor([tokens]), cache=cache)[0][0]
        pos, T = cache.length, len(tokens)
        if pos + T > self.config.block_size:
            raise ValueError(f"sequence of {pos + T} tokens exceeds block_size {self.config.block_size}")
        C, H = self.config.n_embd, self.config.n_head
        blocks, tok_emb, pos_emb, ln_f, lm_head = self._decode_weights()
        x = tok_emb[tokens]
        if pos_emb is not None:
            x = x + pos_emb[pos:pos + T]
        # new token i (at position pos + i) may not look at the new tokens after it
        hidden = torch.ones(T, pos + T, dtype=torch.bool).triu_(pos + 1) if T > 1 else None
        for layer, (ln1, qkv_linear, proj, ln2, fc, fc_proj, qk_norm) in enumerate(blocks):
            qkv = F.linear(F.layer_norm(x, (C,), *ln1), *qkv_linear).view(T, 3, 1, H, C // H).permute(1, 2, 3, 0, 4)
            q, k, v = qkv.unbind(0)
            if qk_norm:
                q, k = F.rms_norm(qkv[:2], (C // H,)).unbind(0)
            k, v = cache.update(layer, k, v)
            scores = (q @ k.transpose(-2, -1)).mul_(1 / math.sqrt(C // H))
            if hidden is not None:
                scores.masked_fill_(hidden, float("-inf"))
            x = x + F.linear((scores.softmax(-1) @ v).transpose(1, 2).reshape(T, C), *proj)
            x = x + F.linear(F.gelu(F.linear(F.layer_norm(x, (C,), *ln2), *fc)), *fc_proj)
        cache.length += T
        return F.linear(F.layer_norm(x, (C,), *ln_f), lm_head)

    def _decode_weights(self) -> tuple:
        """The tensors ``decode`` reads, gathered once: looking them up through the modules costs ~14%
        of a pass (docs/LOG.md). They are the parameters themselves, which loading weights (in place)
        and ``.to()`` keep current."""
        if self._decode_cache is None:
            norm = lambda ln: (ln.weight, ln.bias, ln.eps)  # noqa: E731
            linear = lambda lin: (lin.weight, lin.bias)  # noqa: E731
            blocks = [(norm(b.ln1), linear(b.attn.qkv), linear(b.attn.proj), norm(b.ln2), linear(b.mlp.fc),
                       linear(b.mlp.proj), b.attn.qk_norm) for b in self.blocks]
            pos_emb = self.pos_emb.weight if self.pos_emb is not None else None
            self._decode_cache = (blocks, self.tok_emb.weight, pos_emb, norm(self.ln_f), self.lm_head.weight)
        return self._decode_cache

    def new_cache(self, batch_size: int = 1) -> KVCache:
        return KVCache(self.config, batch_size, next(self.parameters()).dtype)

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Attention probabilities of every layer for ``idx``: a list of (batch, head, T, T) tensors."""
        maps: list[torch.Tensor] = []
        self.forward(idx, attn_out=maps)
        return maps
