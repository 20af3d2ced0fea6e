"""Sampling: temperature (0 is greedy), top-k, top-p, a seed, streaming, a key-value cache, and
speculative sampling with an n-gram draft.

Context policy: the model sees at most ``block_size`` tokens. A longer prompt is cropped from the left.
When generation fills the window of a model with a table of absolute positions, the oldest quarter is
dropped and the cache is rebuilt from the remaining tokens (cached keys are tied to their positions); the
uncached path (``use_cache=False``) recomputes the same window at every step. A model with relative
positions (rotary or none) slides instead: each new token sees the ``block_size`` tokens up to itself
(sliding-window attention), the cache drops its oldest slot as a new one comes and is never rebuilt, and
the uncached path runs the whole sequence with the same sliding-window mask. Either way both paths give
the same text.
With a draft, one pass of the model checks several guessed tokens (``choose_tokens``); the text keeps
the model's distribution, and at temperature 0 it is the same text as without the draft.

The model runs on its own device; the few logits of each pass come back to the CPU, where the token is
drawn with a CPU generator: a token id must reach Python anyway, and a seed then gives the same draws on
every device.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn as nn

from ..config import is_int
from ..tokenizers import Tokenizer
from .draft import NgramDraft

MAX_NEW_TOKENS = 100_000
DRAFT_TOKENS = 4  # guesses checked per pass: more are rarely all accepted, and each costs a position of the pass


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


def choose_tokens(logits: torch.Tensor, guesses: list[int], params: SamplingParams,
                  generator: torch.Generator) -> list[int]:
    """The guesses the model keeps, then one token it draws itself: speculative sampling's rule for a
    guesser that names one token (Leviathan et al. 2023, with the draft distribution a point mass).

    ``logits`` has one row per position: row i is the model's distribution where ``guesses[i]`` was
    guessed, and the last row is the one after all guesses. Guess g is kept with probability p(g);
    at the first one rejected, the token is drawn from p without g. Each emitted token is then
    distributed exactly as p, so the text is what sampling one token at a time could give, and at
    temperature 0 it is the same text.
    """
    logits = logits.float().cpu()
    if params.temperature == 0:
        best = logits.argmax(-1).tolist()
        kept = 0
        while kept < len(guesses) and guesses[kept] == best[kept]:
            kept += 1
        return guesses[:kept] + [best[kept]]
    probs = next_token_probs(logits, params)
    if guesses:  # one call each for the guesses' probabilities and the uniform draws: a pass is short, calls add up
        p_guess = probs[torch.arange(len(guesses)), guesses].tolist()
        for i, u in enumerate(torch.rand(len(guesses), generator=generator).tolist()):
            if u >= p_guess[i]:
                rest = probs[i].clone()
                rest[guesses[i]] = 0.0
                return guesses[:i] + [int(torch.multinomial(rest, 1, generator=generator))]
    return guesses + [int(torch.multinomial(probs[-1], 1, generator=generator))]


@torch.inference_mode()  # lighter than no_grad: no version counters or view tracking
def stream_tokens(
    model: nn.Module,
    prompt_ids: list[int],
    params: SamplingParams,
    use_cache: bool = True,
    draft: NgramDraft | None = None,
    slide: bool | None = None,
) -> Iterator[int]:
    """Yield new token ids one at a time (batch 1).

    With ``draft``, each pass of the model checks up to ``DRAFT_TOKENS`` guesses from the n-gram table
    and yields the ones it keeps plus one more token (``choose_tokens``); without, one token per pass.
    ``slide`` chooses the sliding window (the default where the model allows it) or drop-and-rebuild.
    """
    params.validate()
    if not prompt_ids:
        raise ValueError("prompt_ids must not be empty")
    model.eval()
    device = next(model.parameters()).device
    block = model.config.block_size
    keep = block - max(1, block // 4)
    seed = params.seed if params.seed is not None else random.SystemRandom().randrange(2**63)
    generator = torch.Generator().manual_seed(seed)
    context = list(prompt_ids[-block:])
    can_slide = getattr(model, "slides", False)
    if slide and not can_slide:
        raise ValueError("this model has absolute positions: its window cannot slide")
    slide = can_slide if slide is None else slide
    cache = None
    if use_cache and hasattr(model, "new_cache"):
        cache = model.new_cache(1, extra=DRAFT_TOKENS) if slide else model.new_cache(1)

    def prefill(upto: int) -> torch.Tensor | None:
        """The context's first ``upto`` tokens into the emptied cache in one pass; their last logits."""
        cache.reset()
        if upto:
            return model(torch.tensor([context[:upto]], device=device), cache=cache)[0][0, -1:]
        return None

    def next_pass(guesses: list[int]) -> torch.Tensor:
        """Logits for the newest context token and the guesses after it (the cache holds the rest)."""
        if cache is not None and slide and cache.length > block - 1:
            cache.slide(cache.length - (block - 1))  # the first new token needs only the last block - 1
        if cache is not None:
            return model.decode(context[-1:] + guesses, cache)
        # sliding: the whole sequence, each token seeing its own window (the model's mask does that)
        return model(torch.tensor([context + guesses], device=device))[0][0, -1 - len(guesses):]

    remaining = params.max_new_tokens
    # the first token comes from the prompt's own pass (no guesses), so it waits for one pass, not two
    guesses: list[int] = []
    logits = prefill(len(context)) if cache is not None else next_pass([])
    while remaining > 0:
        new = choose_tokens(logits, guesses, params, generator)
        if cache is not None:
            cache.length = len(context) - cache.start + len(new) - 1  # forget the rejected guesses
        yield from new
        remaining -= len(new)
        context.extend(new)
        if not slide and len(context) > block:
            del context[:-keep]
            if cache is not None:  # the cache holds every context token but the newest
                prefill(len(context) - 1)
        if remaining > 0:
            # guesses must fit in the window (or the sliding cache's extra slots); the pass adds one token
            room = min(DRAFT_TOKENS, DRAFT_TOKENS if slide else block - len(context), remaining - 1)
            guesses = draft.propose(context, room) if draft is not None and room > 0 else []
            logits = next_pass(guesses)


def encode_prompt(tokenizer: Tokenizer, prompt: str, policy: str = "strict") -> list[int]:
    """Prompt ids; an empty prompt (or one emptied by the policy) starts from a newline, or from token 0
    where the vocabulary has no newline."""
    ids = tokenizer.encode(prompt, policy)
    return ids or tokenizer.encode("\n", "drop") or [0]


def stream_text(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompt: str,
    params: SamplingParams,
    use_cache: bool = True,
    policy: str = "strict",
    draft: NgramDraft | None = None,
) -> Iterator[str]:
    """Yield the continuation of ``prompt`` as it is generated, in pieces of whole characters (a byte-level
    token may hold part of one: its bytes wait for the rest)."""
    yield from tokenizer.decode_stream(stream_tokens(model, encode_prompt(tokenizer, prompt, policy), params,
                                                     use_cache, draft))


def generate(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompt: str,
    params: SamplingParams,
    use_cache: bool = True,
    policy: str = "strict",
    draft: NgramDraft | None = None,
) -> str:
    """The whole continuation of ``prompt`` (without the prompt itself)."""
    return "".join(stream_text(model, tokenizer, prompt, params, use_cache, policy, draft))


@torch.no_grad()
def next_token_distribution(
    model: nn.Module, tokenizer: Tokenizer, text: str, params: SamplingParams, policy: str = "strict"
) -> list[tuple[str, float]]:
    """(text piece, probability) pairs of the next token after ``text``, most likely first."""
    params.validate()
    ids = encode_prompt(tokenizer, text, policy)[-model.config.block_size:]
    model.eval()
    logits, _ = model(torch.tensor([ids], device=next(model.parameters()).device))
    probs = next_token_probs(logits[0, -1].cpu(), params)
    order = probs.argsort(descending=True).tolist()
    return [(tokenizer.piece(i), float(probs[i])) for i in order]
