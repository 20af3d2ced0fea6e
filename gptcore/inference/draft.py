"""A character n-gram table that guesses the next few tokens, for speculative sampling.

At batch 1 on a CPU, running the model on five tokens costs little more than on one: the weights are
read once either way. So the sampler lets this table guess a few tokens, checks them in one pass of the
model, and keeps the ones the model agrees with (``gptcore.inference.sampling``). The table only decides how many
tokens one pass yields, never which: the text comes out as the model alone would give it.

For every context of 1 to ``order`` tokens seen in the training split, the table stores the token that
most often follows it (ties: the smallest id), and a guess uses the longest stored suffix of the context.
A context whose guess equals the guess of its one-shorter suffix is not stored, as backing off gives the
same answer; that keeps the shipped table small.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..bounded import short_repr
from ..config import is_int
from ..errors import CheckpointError
from ..storage import load_tensors, save_tensors

DEFAULT_ORDER = 5
MAX_ORDER = 12  # contexts longer than this are never worth storing, and codes must fit in int64
MAX_ENTRIES = 1 << 23  # contexts a stored table may hold; a table fit on a gigabyte corpus of characters has fewer


def fitting_order(vocab_size: int, order: int = DEFAULT_ORDER) -> int:
    """The longest context up to ``order`` whose codes fit in int64 for ``vocab_size`` tokens: 5 for a
    character vocabulary, fewer for a large BPE one (4 at 2,048 tokens, 2 at 50,304)."""
    while order > 1 and (vocab_size + 1) ** order * vocab_size >= 2**62:
        order -= 1
    return order


def check_order(order: int, vocab_size: int) -> int:
    """``order`` if a table of that order can be built for ``vocab_size`` tokens, else a ValueError; checked
    before any arithmetic on it (``(vocab_size + 1) ** order`` of a huge order would never finish)."""
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= MAX_ORDER:
        raise ValueError(f"order must be an integer from 1 to {MAX_ORDER}, got {short_repr(order, 40)}")
    if (vocab_size + 1) ** order * vocab_size >= 2**62:
        raise ValueError(f"order {order} is too large for a vocabulary of {vocab_size}: the codes overflow int64")
    return order


class NgramDraft:
    def __init__(self, codes: torch.Tensor, guesses: torch.Tensor, order: int, vocab_size: int):
        self.order, self.vocab_size, self._base = order, vocab_size, vocab_size + 1
        self._codes, self._guesses = codes, guesses
        self._next = dict(zip(codes.tolist(), guesses.tolist()))

    def __len__(self) -> int:
        return len(self._next)

    @classmethod
    def fit(cls, ids: torch.Tensor, vocab_size: int, order: int = DEFAULT_ORDER) -> "NgramDraft":
        """Count every context of 1..order tokens in ``ids`` and keep its most frequent follower."""
        check_order(order, vocab_size)
        ids = torch.as_tensor(ids, dtype=torch.long).flatten()
        if len(ids) and (ids.min() < 0 or ids.max() >= vocab_size):
            raise ValueError(f"token ids must lie in [0, vocab_size={vocab_size})")
        base = vocab_size + 1
        code = torch.zeros_like(ids)  # code[i]: the context ending just before position i
        kept_codes, kept_guesses = [], []
        shorter: tuple[torch.Tensor, torch.Tensor] | None = None
        for n in range(1, min(order, len(ids) - 1) + 1):
            # a context's most recent token is its lowest digit, so a suffix is a code modulo base**k
            code[n:] += (ids[: len(ids) - n] + 1) * base ** (n - 1)
            contexts, guesses = _most_frequent_follower(code[n:], ids[n:], vocab_size)
            keep = torch.ones_like(contexts, dtype=torch.bool)
            if shorter is not None:
                suffix = contexts % base ** (n - 1)
                keep = guesses != shorter[1][torch.searchsorted(shorter[0], suffix)]
            if sum(map(len, kept_codes)) + int(keep.sum()) > MAX_ENTRIES:
                break  # longer contexts would make a table too large to load: guesses back off to shorter ones
            kept_codes.append(contexts[keep])
            kept_guesses.append(guesses[keep])
            shorter = (contexts, guesses)
        empty = torch.zeros(0, dtype=torch.long)
        return cls(torch.cat(kept_codes or [empty]), torch.cat(kept_guesses or [empty]), order, vocab_size)

    def propose(self, context: list[int], k: int) -> list[int]:
        """Up to ``k`` guessed tokens after ``context``, each guess extending the context for the next;
        fewer if the table has nothing to say."""
        recent = list(context[-self.order:])
        out: list[int] = []
        for _ in range(k):
            code, scale, guess = 0, 1, None
            for token in reversed(recent):  # every suffix length: a shorter one may be the stored one
                code += (token + 1) * scale
                scale *= self._base
                guess = self._next.get(code, guess)
            if guess is None:
                break
            out.append(guess)
            recent = recent[1:] + [guess] if len(recent) == self.order else recent + [guess]
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        """What a draft file stores."""
        return {"codes": self._codes, "guesses": self._guesses, "meta": torch.tensor([self.order, self.vocab_size])}

    def save(self, path: Path) -> None:
        save_tensors(path, self.tensors())

    @classmethod
    def load(cls, path: Path) -> "NgramDraft":
        tensors = load_tensors(path)
        try:
            codes, guesses, (order, vocab_size) = tensors["codes"], tensors["guesses"], tensors["meta"].tolist()
            _check_table(codes, guesses, order, vocab_size)
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path} is not a usable n-gram draft ({e})") from None
        return cls(codes, guesses, int(order), int(vocab_size))


def _check_table(codes: torch.Tensor, guesses: torch.Tensor, order, vocab_size) -> None:
    """A stored table that sampling can use: integer codes of contexts up to ``order`` tokens, a guess within
    the vocabulary for each, and no more entries than MAX_ENTRIES (the table becomes a Python dict)."""
    if not is_int(vocab_size) or vocab_size < 1:
        raise ValueError(f"its vocabulary size is {vocab_size!r}")
    check_order(order, vocab_size)
    if codes.shape != guesses.shape or codes.dim() != 1:
        raise ValueError("codes and guesses differ in shape")
    if codes.dtype != torch.long or guesses.dtype != torch.long:
        raise ValueError("codes and guesses must be int64")
    if len(codes) > MAX_ENTRIES:
        raise ValueError(f"it has {len(codes):,} entries, more than {MAX_ENTRIES:,}")
    if len(codes) and (int(guesses.min()) < 0 or int(guesses.max()) >= vocab_size or int(codes.min()) < 1):
        raise ValueError(f"its guesses must be token ids below {vocab_size} and its codes positive")


def _most_frequent_follower(contexts: torch.Tensor, followers: torch.Tensor, vocab_size: int):
    """(distinct contexts in increasing order, each one's most frequent follower, ties to the smallest)."""
    pairs, counts = torch.unique(contexts * vocab_size + followers, return_counts=True)
    by_count = torch.argsort(-counts, stable=True)  # ties keep the pair order: smaller follower first
    by_context = by_count[torch.argsort(pairs[by_count] // vocab_size, stable=True)]
    pairs = pairs[by_context]
    first = torch.ones_like(pairs, dtype=torch.bool)
    first[1:] = pairs[1:] // vocab_size != pairs[:-1] // vocab_size
    return pairs[first] // vocab_size, pairs[first] % vocab_size
