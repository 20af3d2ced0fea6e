"""Snapshots: what a model does on one fixed probe text, recorded every N steps of a training run, so that a
learner can replay how its heads came to do what they do.

A snapshot holds every head's attention on the probe, the model's most likely next token and its surprise at
each position, the probe's loss, and a one-line role per head (:mod:`gptcore.head_roles`). The probe is the
start of the validation split's first full line, so it is the same at every step, in a resumed run too, and
never text the model trained on. One text is an anecdote, so each head's role is also read on WINDOWS
windows spread over the validation split (the probe first), and the role most of them give is kept with
how many gave it.

The file is bounded: the probe has at most PROBE_TOKENS tokens (fewer for a model so wide that MIN_KEPT
snapshots would not fit in MAX_ATTENTION_BYTES), and a run keeps at most ``capacity`` snapshots. When they
are all taken, every other one is dropped and the interval doubles, so a run of any length keeps snapshots
spread evenly over its whole course. The file is rewritten atomically after every snapshot; a resumed run
drops the ones taken after its saved state and takes them again, so none is missing or doubled.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from .errors import CheckpointError
from .head_roles import describe_heads
from .shards import ShardSet
from .storage import atomic_torch_save, safe_torch_load
from .tokenizers.base import Tokenizer

SNAPSHOTS_FILE = "snapshots.pt"
FORMAT = 1
PROBE_TOKENS = 64
PROBE_SEARCH = 2_000  # tokens of the validation split searched for the first line start
MAX_ATTENTION_BYTES = 8 * 2**20  # the attention of every kept snapshot together, stored as float16
MAX_KEPT = 128
MIN_KEPT = 8
WINDOWS = 8
WINDOWS_SPAN = 200_000  # tokens of the validation split the windows are spread over
TENSORS = ("attention", "surprise", "predicted", "confidence", "agreement")  # stored stacked, one row a snapshot


@dataclass
class Snapshot:
    """The model at one step, on the probe of T tokens."""

    step: int
    loss: float  # mean surprise over the probe's tokens after the first, in nats
    attention: torch.Tensor  # (n_layer, n_head, T, T) float16
    surprise: torch.Tensor  # (T - 1,) float32: -log p(token i | tokens < i), i = 1 .. T-1
    predicted: torch.Tensor  # (T,) int64: the most likely token after each position
    confidence: torch.Tensor  # (T,) float32: that token's probability
    roles: list[list[str]]  # [layer][head]: the head's role on the probe, in words, with its measure
    kinds: list[list[str]]  # [layer][head]: the role most of the windows give (what to compare between steps)
    agreement: torch.Tensor  # (n_layer, n_head) int64: how many of the windows give that role


@dataclass
class Snapshots:
    """The snapshots of one run: its windows of text, the interval now in force, and the ones kept, by step."""

    windows: list[list[int]]  # the token ids of each window of text; the first is the probe
    window_pieces: list[list[str]]  # each window's tokens as text
    interval: int
    capacity: int
    taken: list[Snapshot] = field(default_factory=list)

    @property
    def probe_ids(self) -> list[int]:
        return self.windows[0]

    @property
    def pieces(self) -> list[str]:
        return self.window_pieces[0]

    @property
    def steps(self) -> list[int]:
        return [s.step for s in self.taken]

    def at(self, step: int) -> Snapshot:
        """The last snapshot taken at or before ``step`` (the first one for an earlier step)."""
        if not self.taken:
            raise ValueError("no snapshots have been taken yet")
        before = [s for s in self.taken if s.step <= step]
        return before[-1] if before else self.taken[0]

    def due(self, step: int) -> bool:
        return step % self.interval == 0 and (not self.taken or step > self.taken[-1].step)

    def take(self, model: nn.Module, step: int) -> bool:
        """Record ``model`` at ``step`` if a snapshot is due (thinning the kept ones first when they are all
        taken); True if one was recorded."""
        if not self.due(step):
            return False
        if len(self.taken) >= self.capacity:
            self.interval *= 2
            self.taken = [s for s in self.taken if s.step % self.interval == 0]
            if not self.due(step):
                return False
        self.taken.append(observe(model, self.windows, self.window_pieces, step))
        return True

    def drop_after(self, step: int) -> None:
        """Forget the snapshots after ``step``: a run resumed from there takes them again."""
        self.taken = [s for s in self.taken if s.step <= step]

    def save(self, directory: str | os.PathLike) -> None:
        atomic_torch_save(Path(directory) / SNAPSHOTS_FILE, self._to_dict())

    def _to_dict(self) -> dict:
        def stack(name: str) -> torch.Tensor:
            return torch.stack([getattr(s, name) for s in self.taken]) if self.taken else torch.empty(0)

        return {"format": FORMAT, "windows": torch.tensor(self.windows), "window_pieces": self.window_pieces,
                "interval": self.interval, "capacity": self.capacity,
                "steps": torch.tensor(self.steps, dtype=torch.long),
                "loss": torch.tensor([s.loss for s in self.taken], dtype=torch.float32),
                **{name: stack(name) for name in TENSORS},
                "roles": [s.roles for s in self.taken], "kinds": [s.kinds for s in self.taken]}

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Snapshots":
        path = Path(directory) / SNAPSHOTS_FILE
        d = safe_torch_load(path)
        try:
            if d.get("format") != FORMAT:
                raise ValueError(f"format {d.get('format')!r}, not {FORMAT}")
            taken = [Snapshot(int(step), float(d["loss"][i]), **{name: d[name][i] for name in TENSORS},
                              roles=d["roles"][i], kinds=d["kinds"][i])
                     for i, step in enumerate(d["steps"].tolist())]
            return cls(d["windows"].tolist(), [list(p) for p in d["window_pieces"]], int(d["interval"]),
                       int(d["capacity"]), taken)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{path} is not a gptcore snapshots file ({e})") from None



def exists(directory: str | os.PathLike) -> bool:
    return (Path(directory) / SNAPSHOTS_FILE).is_file()


def text_windows(val: torch.Tensor | ShardSet, tokenizer: Tokenizer, length: int, n: int = WINDOWS) -> list[list[int]]:
    """``n`` windows of ``length`` tokens spread evenly over the validation split's first WINDOWS_SPAN tokens;
    the first (the probe) starts at the beginning of its first full line, if one starts early enough."""
    head = val.head(WINDOWS_SPAN) if isinstance(val, ShardSet) else val[:WINDOWS_SPAN]
    ids = torch.as_tensor(head).tolist()
    if len(ids) < length:
        return [ids]
    newlines = {t for t in set(ids[:PROBE_SEARCH]) if "\n" in tokenizer.piece(t)}
    first = next((i + 1 for i, t in enumerate(ids[:PROBE_SEARCH]) if t in newlines), 0)
    if first + length > len(ids):
        first = 0
    starts = [first] + [int(s) for s in torch.linspace(first + length, len(ids) - length, n - 1).tolist()
                        if s >= first + length]
    return [ids[s:s + length] for s in starts[:n]]


def probe_length(n_layer: int, n_head: int, block_size: int) -> int:
    """At most PROBE_TOKENS and the context, and short enough that MIN_KEPT snapshots fit the byte bound."""
    fits = math.isqrt(MAX_ATTENTION_BYTES // (MIN_KEPT * n_layer * n_head * 2))
    return max(2, min(PROBE_TOKENS, block_size, fits))


def begin(model: nn.Module, tokenizer: Tokenizer, val: torch.Tensor | ShardSet, interval: int) -> Snapshots:
    """Empty snapshots of ``model``'s run, taken every ``interval`` steps on windows of the validation split."""
    cfg = model.config
    windows = text_windows(val, tokenizer, probe_length(cfg.n_layer, cfg.n_head, cfg.block_size))
    if len(windows[0]) < 2:
        raise ValueError("snapshots need a validation split of at least 2 tokens")
    per_snapshot = cfg.n_layer * cfg.n_head * len(windows[0]) ** 2 * 2
    capacity = max(MIN_KEPT, min(MAX_KEPT, MAX_ATTENTION_BYTES // per_snapshot))
    return Snapshots(windows, [[tokenizer.piece(i) for i in w] for w in windows], interval, capacity)


@torch.no_grad()
def observe(model: nn.Module, windows: list[list[int]], window_pieces: list[list[str]], step: int) -> Snapshot:
    """One forward pass over the windows in float32 with dropout off (the model's mode is restored after):
    the probe's numbers, and each head's role on every window."""
    was_training = model.training
    model.eval()
    try:
        idx = torch.tensor(windows, device=next(model.parameters()).device)
        maps: list[torch.Tensor] = []
        logits, _ = model(idx, attn_out=maps)
    finally:
        model.train(was_training)
    log_probs = logits[0].float().log_softmax(-1).cpu()
    surprise = -log_probs[:-1].gather(1, idx[0, 1:, None].cpu()).squeeze(1)
    best, predicted = log_probs.max(-1)
    attention = torch.stack([m.float().cpu() for m in maps], 1)  # (windows, n_layer, n_head, T, T)
    roles = [describe_heads(list(a.numpy()), pieces) for a, pieces in zip(attention, window_pieces)]
    kinds, agreement = majority_roles([[[r.description for r in layer] for layer in w] for w in roles])
    return Snapshot(step, float(surprise.mean()), attention[0].half(), surprise, predicted, best.exp(),
                    [[r.line() for r in layer] for layer in roles[0]], kinds, agreement)


def majority_roles(per_window: list[list[list[str]]]) -> tuple[list[list[str]], torch.Tensor]:
    """For each head, the role most windows give (the probe's on a tie) and how many give it."""
    n_layer, n_head = len(per_window[0]), len(per_window[0][0])
    kinds, agreement = [], torch.zeros(n_layer, n_head, dtype=torch.long)
    for layer in range(n_layer):
        kinds.append([])
        for head in range(n_head):
            said = Counter(w[layer][head] for w in per_window)
            role, count = max(said.items(), key=lambda kv: (kv[1], kv[0] == per_window[0][layer][head]))
            kinds[-1].append(role)
            agreement[layer, head] = count
    return kinds, agreement


def role_changes(snaps: Snapshots) -> list[list[list[tuple[int, str]]]]:
    """For each head ([layer][head]), the (step, role) of every snapshot where the role most windows give
    changed, the first snapshot included: how the head's job formed."""
    if not snaps.taken:
        return []
    n_layer, n_head = snaps.taken[0].attention.shape[:2]
    changes: list[list[list[tuple[int, str]]]] = [[[] for _ in range(n_head)] for _ in range(n_layer)]
    for shot in snaps.taken:
        for layer in range(n_layer):
            for head in range(n_head):
                history = changes[layer][head]
                if not history or history[-1][1] != shot.kinds[layer][head]:
                    history.append((shot.step, shot.kinds[layer][head]))
    return changes


def settled_roles(snaps: Snapshots) -> list[list[tuple[str, int]]]:
    """For each head, its role at the last snapshot and the step from which every later snapshot gives it."""
    return [[history[-1][::-1] for history in heads] for heads in role_changes(snaps)]
