"""The causal rule, written once: which keys a query may look at.

A query at position q sees keys 0 .. q, or with a ``window`` only the last ``window`` of them,
q - window < k <= q (sliding-window attention). The explicit and fused paths build a whole mask from it
(:func:`causal_mask`); the tiled path applies it one tile at a time (:func:`hidden_keys`).
"""

from __future__ import annotations

import torch


def hidden_keys(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """(len(q_pos), len(k_pos)) booleans, True where the query at position q_pos[i] may not see the key at
    position k_pos[j]: a later key, or one outside the query's window."""
    hidden = k_pos[None, :] > q_pos[:, None]
    if window is not None:
        hidden |= k_pos[None, :] <= q_pos[:, None] - window
    return hidden


def causal_mask(queries: int, keys: int, device: torch.device | str = "cpu", hidden: bool = False,
                window: int | None = None) -> torch.Tensor:
    """(queries, keys) booleans, True where query i may look at key j (or, with ``hidden``, where it may not).

    The queries are the newest ``queries`` positions of ``keys``: query i sits at key index
    ``keys - queries + i``."""
    k_pos = torch.arange(keys, device=device)
    mask = hidden_keys(k_pos[keys - queries:], k_pos, window)
    return mask if hidden else ~mask
