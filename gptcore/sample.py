"""Sampling: temperature (0 is greedy), top-k, top-p, a seed, streaming, and a key-value cache.

Context policy: the model sees at most ``block_size`` tokens. A longer prompt is cropped from the left.
When generation fills the window, the oldest quarter is dropped and the cache is rebuilt from the
remaining tokens (position embeddings are absolute, so cached keys cannot simply slide). The uncached
path (``use_cache=False``) recomputes the same window at every step, so both paths give the same text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn as nn

from .config import is_int
from .tokenizer import CharTokenizer

MAX_NEW_TOKENS = 100_000


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    max_new_tokens: int = 500
    seed: int | None = None

    def validate(self) -> "SamplingParams":
        if not isinstance(self.temperature, (int, float)) or not self.temperature >= 0:
            raise ValueError(f"temperature must be a number >= 0 (0 means greedy), got {self.temperature!r}")
        if self.top_k is not None and (not is_int(self.top_k) or self.top_k < 1):
            raise ValueError(f"top_k must be an integer >= 1 (or None for no limit), got {self.top_k!r}")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not is_int(self.max_new_tokens) or not 0 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise ValueError(f"max_new_tokens must be an integer in [0, {MAX_NEW_TOKENS}], got {self.max_new_tokens!r}")
        if self.seed is not None and not is_int(self.seed):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        return self


def next_token_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """The distribution actually sampled from: temperature, then top-k, then top-p; rows sum to 1.

    Temperature 0 puts all mass on the most likely token (greedy).
    """
    logits = logits.float()
    if params.temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.size(-1)).float()
    logits = logits / params.temperature
    if params.top_k is not None and params.top_k < logits.size(-1):
        kth = torch.topk(logits, params.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(-1, descending=True)
        # keep a token if the mass strictly before it is below top_p: the smallest set reaching top_p
        before = sorted_probs.cumsum(-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(before >= params.top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def _pick(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> torch.Tensor:
    """One token id drawn from a (vocab_size,) row of logits."""
    if params.temperature == 0:
        return logits.argmax()
    return torch.multinomial(next_token_probs(logits, params), 1, generator=generator)[0]


@torch.inference_mode()  # lighter than no_grad: no version counters or view tracking
def stream_tokens(
    model: nn.Module, prompt_ids: list[int], params: SamplingParams, use_cache: bool = True
) -> Iterator[int]:
    """Yield new token ids one at a time (batch 1)."""
    params.validate()
    if not prompt_ids:
        raise ValueError("prompt_ids must not be empty")
    model.eval()
    block = model.config.block_size
    keep = block - max(1, block // 4)
    seed = params.seed if params.seed is not None else random.SystemRandom().randrange(2**63)
    generator = torch.Generator().manual_seed(seed)
    context = list(prompt_ids[-block:])
    cache = model.new_cache(1) if use_cache and hasattr(model, "new_cache") else None
    logits = model(torch.tensor([context]), cache=cache)[0][0, -1]
    for _ in range(params.max_new_tokens):
        token = int(_pick(logits, params, generator))
        yield token
        context.append(token)
        if len(context) > block:
            del context[:-keep]
            if cache is not None:
                cache.reset()
                logits = model(torch.tensor([context]), cache=cache)[0][0, -1]
                continue
        if cache is not None:
            logits = model.decode_step(token, cache)
        else:
            logits = model(torch.tensor([context]))[0][0, -1]


def encode_prompt(tokenizer: CharTokenizer, prompt: str, policy: str = "strict") -> list[int]:
    """Prompt ids; an empty prompt (or one emptied by the policy) starts from a newline."""
    ids = tokenizer.encode(prompt, policy)
    return ids or tokenizer.encode("\n", "replace") or [0]


def stream_text(
    model: nn.Module,
    tokenizer: CharTokenizer,
    prompt: str,
    params: SamplingParams,
    use_cache: bool = True,
    policy: str = "strict",
) -> Iterator[str]:
    """Yield the continuation of ``prompt`` one character at a time."""
    for token in stream_tokens(model, encode_prompt(tokenizer, prompt, policy), params, use_cache):
        yield tokenizer.chars[token]


def generate(
    model: nn.Module,
    tokenizer: CharTokenizer,
    prompt: str,
    params: SamplingParams,
    use_cache: bool = True,
    policy: str = "strict",
) -> str:
    """The whole continuation of ``prompt`` (without the prompt itself)."""
    return "".join(stream_text(model, tokenizer, prompt, params, use_cache, policy))


@torch.no_grad()
def next_token_distribution(
    model: nn.Module, tokenizer: CharTokenizer, text: str, params: SamplingParams, policy: str = "strict"
) -> list[tuple[str, float]]:
    """(character, probability) pairs of the next token after ``text``, most likely first."""
    params.validate()
    ids = encode_prompt(tokenizer, text, policy)[-model.config.block_size:]
    model.eval()
    logits, _ = model(torch.tensor([ids]))
    probs = next_token_probs(logits[0, -1], params)
    order = probs.argsort(descending=True).tolist()
    return [(tokenizer.chars[i], float(probs[i])) for i in order]
