"""The validation loss: mean cross-entropy over every token of a split, in non-overlapping windows.

This is the one number quoted across the project, with its equivalent per character to compare
tokenizers. Periodic estimates during training use a fixed, seeded subset of the same windows, so they
are cheap and comparable between evaluations.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .device import autocast
from .errors import GptcoreError
from .shards import ShardSet, take_windows
from .tokenizers import Tokenizer


def too_short_to_measure(tokens: int) -> GptcoreError:
    """The error for a validation split too short to measure a loss on (a loss needs a token and its successor)."""
    return GptcoreError(f"the validation split has {tokens} token(s); at least 2 are needed to measure a loss: "
                        f"use a longer text")


def window_starts(n_tokens: int, block_size: int) -> list[int]:
    """Starts of the non-overlapping windows that together predict tokens 1 .. n_tokens-1 exactly once."""
    return list(range(0, n_tokens - 1, block_size))


@torch.no_grad()
def split_loss(
    model: nn.Module,
    data: torch.Tensor | ShardSet,
    block_size: int,
    batch_size: int = 64,
    starts: list[int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> float:
    """Mean cross-entropy per predicted token; over the whole split unless ``starts`` picks windows.

    ``data`` stays where it is (the CPU); each batch of windows moves to the model's device, and the per-batch
    sums are read back once at the end, so a GPU is not made to wait once per batch."""
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    starts = window_starts(len(data), block_size) if starts is None else starts
    sums, count = [], 0
    full = [s for s in starts if s + block_size + 1 <= len(data)]
    partial = [s for s in starts if s + block_size + 1 > len(data)]
    batches = [full[i:i + batch_size] for i in range(0, len(full), batch_size)] + [[s] for s in partial]
    if not batches:
        raise too_short_to_measure(len(data))
    try:
        for group in batches:
            length = min(block_size, len(data) - 1 - group[0])
            windows = take_windows(data, torch.tensor(group), length + 1).to(device)
            with autocast(device, dtype):
                logits, _ = model(windows[:, :-1])
            targets = windows[:, 1:]
            sums.append(F.cross_entropy(
                logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum"))
            count += targets.numel()
    finally:
        model.train(was_training)
    return torch.stack(sums).cpu().double().sum().item() / count


def sample_windows(n_tokens: int, block_size: int, n_windows: int, seed: int = 0) -> list[int]:
    """A fixed random subset of the full windows, for cheap periodic estimates."""
    starts = [s for s in window_starts(n_tokens, block_size) if s + block_size + 1 <= n_tokens]
    if n_windows >= len(starts):
        return starts
    g = torch.Generator().manual_seed(seed)
    picked = torch.randperm(len(starts), generator=g)[:n_windows].sort().values
    return [starts[i] for i in picked.tolist()]


def predicted_token_counts(data: torch.Tensor | ShardSet, vocab_size: int) -> torch.Tensor:
    """(vocab_size,) how often each token id is a target in ``data``: tokens 1 .. n-1, the ones a whole-split
    loss predicts (the first has nothing before it)."""
    if isinstance(data, ShardSet):  # counted shard by shard
        counts = torch.from_numpy(data.bincount(vocab_size)).long()
        first = data.head(1)
    else:
        counts = torch.bincount(data.reshape(-1).long(), minlength=vocab_size)
        first = data[:1]
    counts[first.long()] -= 1
    return counts


def nats_per_char(loss: float, data: torch.Tensor, tokenizer: Tokenizer) -> float:
    """A whole-split loss per token (:func:`split_loss` of ``data``) as nats per character of the text it
    predicted (tokens 1 .. n-1): total nats over characters. The only fair way to compare models whose
    tokenizers differ; for a character-level model it equals the loss per token."""
    per_token = torch.tensor(tokenizer.char_counts())
    chars = int((predicted_token_counts(data, len(per_token)) * per_token).sum())
    if chars == 0:
        raise GptcoreError("the evaluated tokens hold no characters: no loss per character exists")
    return loss * (len(data) - 1) / chars


def unigram_loss(train: torch.Tensor | ShardSet, val: torch.Tensor | ShardSet, vocab_size: int) -> float:
    """The whole-split loss of predicting every token of ``val`` from its frequency in ``train`` alone
    (add-one smoothed), blind to all context: where a model that learned nothing about order ends, and so
    the scale a trained model's loss is read against. Same tokens as :func:`split_loss` (1 .. n-1)."""
    counts = predicted_token_counts(train, vocab_size).double() + 1
    log_p = (counts / counts.sum()).log()
    targets = predicted_token_counts(val, vocab_size).double()
    if targets.sum() == 0:
        raise too_short_to_measure(len(val))
    return float(-(targets * log_p).sum() / targets.sum())
