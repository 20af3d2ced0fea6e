"""One-line descriptions of what each attention head mostly does on a given text.

For every head we measure how much attention, averaged over the query positions, lands on a few
interpretable targets (the previous token, the first token, the last space, ...), and name the target
that gets the most. Positions are tokens, given as their text pieces: single characters for a
character-level model, pieces of words for BPE. A learner can then jump to the heads with a clear job instead of scanning
every heatmap. Scores are computed from the head's actual weights on the text, never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

PUNCTUATION = set(".,;:!?")
MIN_SHARE = 0.3  # below this, no single target explains the head
MIN_COVERAGE = 0.3  # a target must exist for at least this share of the queries to be considered


def _last_before(pieces: Sequence[str], i: int, wanted: Callable[[str], bool]) -> int | None:
    for j in range(i - 1, -1, -1):
        if wanted(pieces[j]):
            return j
    return None


def _word_start(pieces: Sequence[str], i: int) -> int | None:
    """The first token of the word token i belongs to (a token starting with a space starts a word)."""
    if not pieces[i].isalpha():
        return None
    j = i
    while j > 0 and pieces[j].isalpha() and pieces[j - 1].lstrip(" ").isalpha():
        j -= 1
    return j if j < i else None


def _line_start(pieces: Sequence[str], i: int) -> int | None:
    j = _last_before(pieces, i, lambda c: "\n" in c)
    return j + 1 if j is not None and j + 1 < i else None


def _induction(pieces: Sequence[str], i: int) -> int | None:
    j = _last_before(pieces, i, lambda c: c == pieces[i])
    return j + 1 if j is not None and j + 1 < i else None


TARGETS: list[tuple[str, Callable[[Sequence[str], int], int | None]]] = [
    ("the current {unit} itself", lambda t, i: i),
    ("the previous {unit}", lambda t, i: i - 1),
    ("the {unit} two back", lambda t, i: i - 2 if i >= 2 else None),
    ("the first {unit}", lambda t, i: 0),
    ("the last space", lambda t, i: _last_before(t, i, lambda c: " " in c)),
    ("the last newline", lambda t, i: _last_before(t, i, lambda c: "\n" in c)),
    ("the last punctuation mark", lambda t, i: _last_before(t, i, lambda c: not PUNCTUATION.isdisjoint(c))),
    ("the start of the current word", _word_start),
    ("the previous occurrence of the same {unit}", lambda t, i: _last_before(t, i, lambda c: c == t[i])),
    ("the start of the line", lambda t, i: _line_start(t, i)),
    # an induction head: at a repeated token, look at what followed its previous occurrence (to copy it)
    ("the {unit} that followed the previous occurrence of the current one (induction)", lambda t, i: _induction(t, i)),
]
RECENT = 4  # a head that is not about one target may still keep to the last few positions
MIN_RECENT_SHARE = 0.6


@dataclass(frozen=True)
class HeadRole:
    description: str
    share: float  # mean attention on the named target (or the mean of the largest weight, if broad)
    broad: bool = False

    def line(self) -> str:
        if self.broad:
            return f"{self.description} (its largest weight averages {self.share:.0%})"
        return f"{self.description} ({self.share:.0%} of its attention on average)"


def unit_name(pieces: Sequence[str]) -> str:
    """What a position is called in the descriptions: "character" when every token is one."""
    return "character" if all(len(p) == 1 for p in pieces) else "token"


def target_shares(probs: np.ndarray, pieces: Sequence[str]) -> dict[str, float]:
    """Mean attention each target receives over the queries where it exists (query 0 is skipped)."""
    T = probs.shape[-1]
    if len(pieces) != T or probs.shape != (T, T):
        raise ValueError(f"attention of shape {probs.shape} does not match a text of {len(pieces)} tokens")
    shares = {}
    queries = range(1, T)
    unit = unit_name(pieces)
    for name, target in TARGETS:
        values = [probs[i, j] for i in queries if (j := target(pieces, i)) is not None and 0 <= j <= i]
        if queries and len(values) >= MIN_COVERAGE * len(queries):
            shares[name.format(unit=unit)] = float(np.mean(values))
    return shares


def head_role(probs: np.ndarray, pieces: Sequence[str]) -> HeadRole:
    """Name the target with the largest mean share, or call the head broad if none reaches MIN_SHARE."""
    probs = np.asarray(probs, dtype=np.float64)
    unit = unit_name(pieces)
    if len(pieces) < 2:
        return HeadRole(f"too little text to tell (needs at least 2 {unit}s)", 1.0, broad=True)
    shares = target_shares(probs, pieces)
    if shares:
        name, share = max(shares.items(), key=lambda kv: kv[1])
        if share >= MIN_SHARE:
            return HeadRole(f"attends to {name}", share)
    recent = float(np.mean([probs[i, max(0, i - RECENT + 1):i + 1].sum() for i in range(1, len(pieces))]))
    if recent >= MIN_RECENT_SHARE:
        return HeadRole(f"spreads its attention over the last {RECENT} {unit}s", recent)
    peak = float(probs[1:].max(axis=-1).mean())
    return HeadRole(f"spreads its attention over many {unit}s, with no single pattern", peak, broad=True)


def describe_heads(maps: list[np.ndarray], pieces: Sequence[str]) -> list[list[HeadRole]]:
    """Roles for every layer and head; ``maps[layer]`` is (n_head, T, T)."""
    return [[head_role(layer[h], pieces) for h in range(layer.shape[0])] for layer in maps]
