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

from .tokenizers.base import visible_piece

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
MAX_WINDOW, WINDOW_SHARES = 8, (0.8, 0.5)  # a head not about one target may keep to the last few positions:
# the smallest window holding 80% of its attention, else the smallest holding half
# ... or prefer a kind of token: its attention on them is well above their share of the text (KIND_RULES)
KINDS: list[tuple[str, Callable[[str], bool]]] = [
    ("spaces", lambda p: " " in p),
    ("newlines", lambda p: "\n" in p),
    ("punctuation marks", lambda p: not PUNCTUATION.isdisjoint(p)),
    ("capital letters", lambda p: p.strip()[:1].isupper()),
    ("vowels", lambda p: len(p) == 1 and p.lower() in "aeiou"),
]
KIND_RULES = ((0.4, 2.0), (0.25, 3.0))  # (share, lift): either pair names the kind
MIN_EVENNESS = 0.85  # mean entropy / log(positions visible) of a head that averages everything before it


@dataclass(frozen=True)
class HeadRole:
    description: str
    share: float  # mean attention on the named target (or the mean of the largest weight, if broad)
    broad: bool = False
    detail: str = ""  # replaces the default "(N% of its attention on average)"

    def line(self) -> str:
        if self.detail:
            return f"{self.description} ({self.detail})"
        if self.broad:
            return f"{self.description} (its largest weight averages {self.share:.0%})"
        return f"{self.description} ({self.share:.0%} of its attention on average)"


def unit_name(pieces: Sequence[str]) -> str:
    """What a position is called in the descriptions: "character" when every token is one."""
    return "character" if all(len(p) == 1 for p in pieces) else "token"


@dataclass
class TextIndex:
    """What the rules need to know about a text, worked out once for all of a model's heads: for each
    target, the (query, key) positions where it exists; for each kind, which positions are of that kind."""

    pieces: Sequence[str]
    unit: str
    targets: dict[str, tuple[np.ndarray, np.ndarray]]
    kinds: dict[str, np.ndarray]
    piece_ids: np.ndarray  # positions numbered by their text, for summing attention per distinct token
    distinct: list[str]


def index_text(pieces: Sequence[str]) -> TextIndex:
    T, unit = len(pieces), unit_name(pieces)
    queries = range(1, T)
    targets = {}
    for name, target in TARGETS:
        pairs = [(i, j) for i in queries if (j := target(pieces, i)) is not None and 0 <= j <= i]
        if queries and len(pairs) >= MIN_COVERAGE * len(queries):
            q, k = (np.array(x, dtype=np.int64) for x in zip(*pairs))
            targets[name.format(unit=unit)] = (q, k)
    kinds = {name: np.array([is_kind(p) for p in pieces], dtype=np.float64) for name, is_kind in KINDS}
    distinct = list(dict.fromkeys(pieces))
    number = {p: n for n, p in enumerate(distinct)}
    return TextIndex(pieces, unit, targets, kinds, np.array([number[p] for p in pieces]), distinct)


def target_shares(probs: np.ndarray, pieces: Sequence[str], index: TextIndex | None = None) -> dict[str, float]:
    """Mean attention each target receives over the queries where it exists (query 0 is skipped)."""
    T = probs.shape[-1]
    if len(pieces) != T or probs.shape != (T, T):
        raise ValueError(f"attention of shape {probs.shape} does not match a text of {len(pieces)} tokens")
    index = index or index_text(pieces)
    return {name: float(probs[q, k].mean()) for name, (q, k) in index.targets.items()}


def head_role(probs: np.ndarray, pieces: Sequence[str], index: TextIndex | None = None) -> HeadRole:
    """The first description that fits, most specific first: one target (the largest mean share, if it
    reaches MIN_SHARE); an even spread over the whole context; a window of the last few tokens; a kind of
    token it prefers; else "no single pattern", with the tokens it looks at most."""
    probs = np.tril(np.asarray(probs, dtype=np.float64))  # a causal head gives the future nothing
    index = index or index_text(pieces)
    unit = index.unit  # worked out once per text, with the rest of the index
    if len(pieces) < 2:
        return HeadRole(f"too little text to tell (needs at least 2 {unit}s)", 1.0, broad=True)
    shares = target_shares(probs, pieces, index)
    if shares:
        name, share = max(shares.items(), key=lambda kv: kv[1])
        if share >= MIN_SHARE:
            return HeadRole(f"attends to {name}", share)
    T = len(pieces)
    if T > 3:
        rows = probs[3:]
        logs = np.log(np.where(rows > 0, rows, 1.0))
        even = float(np.mean(-(rows * logs).sum(1) / np.log(np.arange(4, T + 1))))
        if even >= MIN_EVENNESS:
            return HeadRole(f"spreads its attention evenly over every earlier {unit}: an average of the context",
                            even, broad=True, detail=f"its entropy is {even:.0%} of the most possible")
    # recent[w]: mean over queries 1.. of the attention on the last w positions (the query's own included)
    by_distance = np.zeros((T - 1, MAX_WINDOW))
    for d in range(min(MAX_WINDOW, T)):
        by_distance[d - 1 if d else 0:, d] = np.diagonal(probs, offset=-d)[max(0, 1 - d):]
    recent = np.concatenate([[0.0], by_distance.cumsum(1).mean(0)])
    for least in WINDOW_SHARES:
        for window in range(2, MAX_WINDOW + 1):
            if recent[window] >= least:
                return HeadRole(f"attends within the last {window} {unit}s", float(recent[window]))
    kind = preferred_kind(probs, index)
    if kind:
        return kind
    peak = float(probs[1:].max(axis=-1).mean())
    return HeadRole(f"spreads its attention over many {unit}s, with no single pattern", peak, broad=True,
                    detail=f"its largest weight averages {peak:.0%}; most of it on {favourite_keys(probs, index)}")


def favourite_keys(probs: np.ndarray, index: TextIndex, n: int = 3) -> str:
    """The tokens (by text) that receive the most attention over all queries, with their shares."""
    received = np.bincount(index.piece_ids, weights=probs[1:].sum(0), minlength=len(index.distinct))
    total = float(received.sum())
    top = np.argsort(-received, kind="stable")[:n]
    return ", ".join(f"{visible_piece(index.distinct[t])!r} ({received[t] / total:.0%})" for t in top)


def preferred_kind(probs: np.ndarray, index: TextIndex) -> HeadRole | None:
    """The kind of token (spaces, vowels, ...) the head attends to far more than its share of the text."""
    T, best = len(index.pieces), None
    for name, member in index.kinds.items():
        seen = np.cumsum(member) / np.arange(1, T + 1)  # the kind's share of positions 0 .. i
        queries = np.flatnonzero(seen[1:] > 0) + 1
        if len(queries) < MIN_COVERAGE * (T - 1):
            continue
        share = float((probs[queries] @ member).mean())
        lift = share / float(seen[queries].mean())
        named = any(share >= s and lift >= x for s, x in KIND_RULES)
        if named and (best is None or lift > best[2]):
            best = (name, share, lift)
    if best is None:
        return None
    name, share, lift = best
    return HeadRole(f"prefers {name}", share,
                    detail=f"{share:.0%} of its attention, {lift:.1f}x their share of the text")


def describe_heads(maps: list[np.ndarray], pieces: Sequence[str]) -> list[list[HeadRole]]:
    """Roles for every layer and head; ``maps[layer]`` is (n_head, T, T)."""
    index = index_text(pieces)
    return [[head_role(layer[h], pieces, index) for h in range(layer.shape[0])] for layer in maps]
