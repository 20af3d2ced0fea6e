"""The bigram baseline: the next character depends only on the current one (a table of logits)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig


class Bigram(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config.validate()
        self.table = nn.Embedding(config.vocab_size, config.vocab_size)
        nn.init.zeros_(self.table.weight)  # start at the uniform distribution: loss ln(vocab)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache=None, attn_out=None):
        """Same signature as GPT; the cache is unused because only the last token matters."""
        logits = self.table(idx)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss
