"""The replay of a training run's snapshots: one step's attention, surprise and head roles, as HTML and as
numbers.

Snapshot files (:mod:`gptcore.snapshots`) are read once and kept while unchanged, so that moving the step
slider only builds HTML. Every text piece is escaped by the HTML helpers.
"""

from __future__ import annotations

import html
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from gptcore.snapshots import SNAPSHOTS_FILE, Snapshot, Snapshots

from .html import attention_html, surprise_style, token_strip
from .tokens import visible_piece

MAX_CACHED = 8  # snapshot files kept in memory (the shipped one is about 8 MB)
_cache: "OrderedDict[str, tuple[tuple, Snapshots]]" = OrderedDict()
_cache_lock = threading.Lock()

REPLAY_CSS = """
.gc-roles table { border-collapse: collapse; font-size: 13px; width: 100%; }
.gc-roles th, .gc-roles td { border: 1px solid #e5e7eb; padding: 2px 6px; text-align: left; vertical-align: top; }
.gc-roles tr.gc-picked td { background: #ffedd5; }
.gc-roles td.gc-changed { font-weight: 600; }
"""


def load_snapshots(directory: Path) -> Snapshots:
    """The run's snapshots, from memory unless the file changed since it was read."""
    path = Path(directory) / SNAPSHOTS_FILE
    st = os.stat(path)
    stamp = (st.st_mtime_ns, st.st_size)
    with _cache_lock:
        cached = _cache.get(str(path))
        if cached and cached[0] == stamp:
            _cache.move_to_end(str(path))
            return cached[1]
    snaps = Snapshots.load(directory)
    with _cache_lock:
        _cache[str(path)] = (stamp, snaps)
        while len(_cache) > MAX_CACHED:
            _cache.popitem(last=False)
    return snaps


def step_label(snaps: Snapshots, index: int) -> str:
    shot = snaps.taken[index]
    return (f"**Step {shot.step:,}** (snapshot {index + 1} of {len(snaps.taken)}, every {snaps.interval:,} steps) "
            f"· loss on the probe text **{shot.loss:.3f} nats**")


def surprise_html(snaps: Snapshots, shot: Snapshot, decode, unit: str) -> str:
    """The probe coloured by the model's surprise at this step; each token's title says what it expected."""
    pieces = snaps.pieces
    styles, titles = [""], [f"the first {unit}: nothing to predict it from"]
    for i in range(1, len(pieces)):
        nats = float(shot.surprise[i - 1])
        guess = visible_piece(decode(int(shot.predicted[i - 1])))
        styles.append(surprise_style(nats))
        titles.append(f"surprise {nats:.2f} nats; the model expected {guess!r} "
                      f"({float(shot.confidence[i - 1]):.0%})")
    return (f'<div class="gc-view gc-replay-text"><p class="gc-legend">The probe text (from the validation split), '
            f'each {unit} as red as the model was surprised by it at this step (white = expected, deep red = 5 '
            f'nats or more). Hover or tap a {unit} for what the model expected there.</p>'
            f'{token_strip(pieces, styles, titles)}</div>')


def roles_html(snaps: Snapshots, index: int, picked: tuple[int, int]) -> str:
    """Every head's role at this step: on the probe, and the one most of the windows give (bold where it
    differs from the previous snapshot's)."""
    shot = snaps.taken[index]
    before = snaps.taken[index - 1] if index > 0 else shot
    n = len(snaps.windows)
    rows = ["<tr><th>head</th><th>on the probe text</th><th>over " + str(n) + " windows of validation text</th></tr>"]
    for layer, heads in enumerate(shot.roles):
        for head, role in enumerate(heads):
            kind, agree = shot.kinds[layer][head], int(shot.agreement[layer, head])
            cls = ' class="gc-picked"' if (layer, head) == picked else ""
            changed = ' class="gc-changed"' if kind != before.kinds[layer][head] else ""
            rows.append(f"<tr{cls}><td>L{layer + 1} H{head + 1}</td><td>{html.escape(role)}</td>"
                        f"<td{changed}>{html.escape(kind)} ({agree} of {n})</td></tr>")
    return f'<div class="gc-roles"><table>{"".join(rows)}</table></div>'


def head_html(snaps: Snapshots, index: int, layer: int, head: int, unit: str) -> str:
    shot = snaps.taken[index]
    weights = shot.attention[layer, head].float().numpy()
    return attention_html(snaps.pieces, weights, f"Layer {layer + 1}, head {head + 1} at step {shot.step:,}", unit)


def replay_numbers(snaps: Snapshots, index: int, layer: int, head: int, decode) -> dict:
    """What the replay shows at one snapshot, as numbers: the probe, its surprise and the predictions, every
    head's roles, and the chosen head's attention (row i: what token i looks at)."""
    shot = snaps.taken[index]
    return {"steps": snaps.steps, "step": shot.step, "interval": snaps.interval, "probe": snaps.pieces,
            "probe_loss": round(shot.loss, 5), "surprise": [round(float(x), 5) for x in shot.surprise],
            "predicted": [decode(int(t)) for t in shot.predicted],
            "confidence": [round(float(x), 5) for x in shot.confidence],
            "roles_on_probe": shot.roles, "roles_over_windows": shot.kinds,
            "windows_agreeing": shot.agreement.tolist(), "windows": len(snaps.windows),
            "layer": layer + 1, "head": head + 1,
            "attention": np.round(shot.attention[layer, head].float().numpy(), 4).tolist()}
