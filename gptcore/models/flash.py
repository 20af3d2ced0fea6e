"""FlashAttention's algorithm in plain PyTorch: causal attention that never holds the T x T matrix.

The explicit path computes every score of a sequence at once, so its memory grows with the square of
the context. Here queries and keys go in tiles. For one tile of queries we walk over the tiles of keys
they may see, keeping per query a running maximum ``m`` of the scores, the running sum ``l`` of
``exp(score - m)`` and the running weighted sum of values, each rescaled whenever ``m`` grows (the
"online softmax"): at the end, sum / l is exactly the softmax-weighted average of the values. Only
the output and one number per query (its log-sum-exp, ``m + log l``) are kept for the backward pass,
which walks the tiles again and recomputes each tile's probabilities from the scores and that number,
instead of storing them. Memory grows linearly with the context (Dao et al., 2022, algorithms 1 and 2).

It is written to be read, not tuned: each tile is a few PyTorch calls. On a GPU, SDPA's flash kernels do
the same in one fused kernel, and ``attention="auto"`` uses them there.
"""

from __future__ import annotations

import math

import torch

from .causal import hidden_keys

TILE = 128  # queries and keys per tile


def _working_dtype(dtype: torch.dtype) -> torch.dtype:
    """Tiles are computed in float32 (bfloat16 inputs under autocast included), or in float64 if given it."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _key_range(q_start: int, q_end: int, offset: int, window: int | None) -> tuple[int, int]:
    """Keys that some query of the tile [q_start, q_end) may see: causal up to the last query's position,
    and with a ``window`` no further back than the first query's window reaches."""
    last = offset + q_end  # exclusive
    first = 0 if window is None else max(0, offset + q_start - window + 1)
    return first, last


def _scores(q: torch.Tensor, k: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor,
            window: int | None) -> torch.Tensor:
    """Scaled scores of one tile, -inf where a query may not look (the future, or outside its window)."""
    s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))
    return s.masked_fill(hidden_keys(q_pos, k_pos, window), float("-inf"))


def _keep(seed: int, tile: int, shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """The dropout mask of one tile, scaled by 1 / (1 - p): drawn from a generator seeded by the call's seed
    and the tile's number, so the backward pass draws the same mask again instead of storing it."""
    generator = torch.Generator(device).manual_seed(seed * 1_000_003 + tile)
    return (torch.rand(shape, generator=generator, device=device) >= p) / (1.0 - p)


class _TiledAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, window, dropout_p, seed, tile):
        dtype = q.dtype
        q, k, v = (t.to(_working_dtype(dtype)) for t in (q, k, v))
        T, S = q.size(-2), k.size(-2)
        offset = S - T  # the queries are the last T positions
        out = torch.empty_like(q)
        lse = torch.empty(q.shape[:-1], dtype=q.dtype, device=q.device)
        positions = torch.arange(S, device=q.device)
        for qi, q0 in enumerate(range(0, T, tile)):
            q1 = min(q0 + tile, T)
            qt, q_pos = q[..., q0:q1, :], positions[offset + q0:offset + q1]
            m = torch.full(qt.shape[:-1], float("-inf"), dtype=q.dtype, device=q.device)
            l = torch.zeros_like(m)  # noqa: E741
            acc = torch.zeros_like(qt)
            first, last = _key_range(q0, q1, offset, window)
            for kj, k0 in enumerate(range(first, last, tile)):
                k1 = min(k0 + tile, last)
                s = _scores(qt, k[..., k0:k1, :], q_pos, positions[k0:k1], window)
                m_new = torch.maximum(m, s.amax(-1))
                m_safe = m_new.masked_fill(m_new == float("-inf"), 0.0)  # a row with nothing visible yet
                p = torch.exp(s - m_safe[..., None])
                rescale = torch.exp(m - m_safe)
                l = l * rescale + p.sum(-1)  # noqa: E741
                if dropout_p:
                    p = p * _keep(seed, qi * 1_000_003 + kj, p.shape, dropout_p, q.device)
                acc = acc * rescale[..., None] + p @ v[..., k0:k1, :]
                m = m_new
            out[..., q0:q1, :] = acc / l[..., None]
            lse[..., q0:q1] = m + torch.log(l)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.window, ctx.dropout_p, ctx.seed, ctx.tile = window, dropout_p, seed, tile
        return out.to(dtype)

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse = ctx.saved_tensors
        window, dropout_p, seed, tile = ctx.window, ctx.dropout_p, ctx.seed, ctx.tile
        dtype = grad_out.dtype
        grad_out = grad_out.to(q.dtype)
        T, S = q.size(-2), k.size(-2)
        offset, scale = S - T, 1.0 / math.sqrt(q.size(-1))
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        # rowsum(dO * O) = rowsum(P * dP) per query: the softmax backward's subtrahend, computed once
        delta = (grad_out * out).sum(-1)
        positions = torch.arange(S, device=q.device)
        for qi, q0 in enumerate(range(0, T, tile)):
            q1 = min(q0 + tile, T)
            qt, q_pos, dot = q[..., q0:q1, :], positions[offset + q0:offset + q1], grad_out[..., q0:q1, :]
            first, last = _key_range(q0, q1, offset, window)
            for kj, k0 in enumerate(range(first, last, tile)):
                k1 = min(k0 + tile, last)
                kt, vt = k[..., k0:k1, :], v[..., k0:k1, :]
                p = torch.exp(_scores(qt, kt, q_pos, positions[k0:k1], window) - lse[..., q0:q1, None])
                dp = dot @ vt.transpose(-2, -1)
                if dropout_p:
                    keep = _keep(seed, qi * 1_000_003 + kj, p.shape, dropout_p, q.device)
                    dv[..., k0:k1, :] += (p * keep).transpose(-2, -1) @ dot
                    dp = dp * keep
                else:
                    dv[..., k0:k1, :] += p.transpose(-2, -1) @ dot
                ds = p * (dp - delta[..., q0:q1, None]) * scale
                dq[..., q0:q1, :] += ds @ kt
                dk[..., k0:k1, :] += ds.transpose(-2, -1) @ qt
        return dq.to(dtype), dk.to(dtype), dv.to(dtype), None, None, None, None


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None = None,
                    dropout_p: float = 0.0, tile: int = TILE) -> torch.Tensor:
    """Causal attention of queries (B, H, T, D), the last T positions, over keys and values (B, H, S, D),
    computed in tiles of ``tile`` positions; the same result and gradients as the explicit path, without
    its T x S matrices. ``window``: sliding-window attention (see ``attention.causal_mask``).
    ``dropout_p`` drops attention weights; its masks come from torch's random generator, like dropout's."""
    if tile < 1:
        raise ValueError(f"tile must be at least 1, got {tile}")
    seed = int(torch.randint(0, 2**31 - 1, (1,)).item()) if dropout_p else 0
    return _TiledAttention.apply(q, k, v, window, float(dropout_p), seed, tile)
