"""HTML for the interactive views: token strips, the attention heatmap, predictions, the logit lens table.

Built here, in Python, so that what a view shows is testable without a browser; the hover and click
behaviour lives in ``interactive.js``, which reads each view's data from JSON in ``data-j*`` attributes.
Every piece of text from a model or a visitor is escaped.
"""

from __future__ import annotations

import base64
import functools
import html
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .tokens import visible_piece

CSS = """
.gc-view { font-size: 14px; }
.gc-tokens { line-height: 1.9; max-height: 16em; overflow-y: auto; padding: 4px 2px; }
.gc-tok { display: inline-block; white-space: pre; font-family: ui-monospace, monospace; min-width: 0.62em;
          border-radius: 3px; cursor: pointer; text-align: center; }
.gc-tok.gc-focus { outline: 2px solid #ea580c; }
.gc-info, .gc-tip { min-height: 1.4em; font-size: 13px; margin: 4px 0; }
.gc-heat-wrap { overflow: auto; max-height: 70vh; max-width: 100%; border: 1px solid #e5e7eb; }
.gc-controls { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin-bottom: 4px; }
.gc-controls button { border: 1px solid #d1d5db; border-radius: 6px; padding: 2px 10px; background: white; }
.gc-controls button[aria-pressed="true"] { background: #ffedd5; border-color: #ea580c; }
.gc-dist .gc-bar { display: flex; align-items: center; gap: 6px; font-size: 13px; }
.gc-dist .gc-bar code { min-width: 3.5em; }
.gc-dist .gc-bar span { display: inline-block; height: 0.9em; background: #60a5fa; border-radius: 2px; }
.gc-dist .gc-bar.gc-hit span { background: #16a34a; }
.gc-legend { font-size: 12px; color: #4b5563; }
.gc-steps { font-size: 13px; margin: 4px 0 8px; }
.gc-steps table { border-collapse: collapse; font-size: 13px; }
.gc-steps th, .gc-steps td { border: 1px solid #e5e7eb; padding: 1px 8px; text-align: right; }
.gc-steps td:first-child { font-family: ui-monospace, monospace; text-align: center; }
.gc-lens { overflow-x: auto; max-width: 100%; }
.gc-lens table { border-collapse: collapse; font-family: ui-monospace, monospace; font-size: 13px; }
.gc-lens th, .gc-lens td { border: 1px solid #e5e7eb; padding: 1px 4px; text-align: center; white-space: pre; }
.gc-lens th:first-child, .gc-lens td:first-child { position: sticky; left: 0; background: white;
          font-family: ui-sans-serif, sans-serif; text-align: left; }
.gc-lens td:first-child { white-space: normal; min-width: 6.5em; max-width: 10em; }
.gc-lens td.gc-right { font-weight: 700; text-decoration: underline; }
"""


@functools.cache
def interactive_script() -> str:
    """``interactive.js``, read when the first tab that uses it is built."""
    return Path(__file__).with_name("interactive.js").read_text(encoding="utf-8")

ATTENTION_HINT = ("Point at a token (hover with a mouse, tap on a touch screen), or click one to pin it; point at "
                  "the heatmap for single weights.")
TOP_K = 10  # the most likely next tokens kept per position for the prediction view


def _attr(value) -> str:
    """``value`` as JSON, escaped for a double-quoted HTML attribute."""
    return html.escape(json.dumps(value, ensure_ascii=False, separators=(",", ":")), quote=True)


def _lower_triangle(a: np.ndarray) -> np.ndarray:
    """Row by row, the entries on and below the diagonal of a (T, T) matrix: row q has q + 1 of them."""
    return np.asarray(a, dtype=np.float64)[np.tril_indices(a.shape[0])]


def _packed(values: np.ndarray, dtype: str) -> str:
    return base64.b64encode(values.astype(dtype).tobytes()).decode("ascii")


def packed_weights(weights: np.ndarray) -> str:
    """The lower triangle of a (T, T) attention matrix, row by row (row q has q + 1 weights), as base64 of
    little-endian uint16 (weight x 65535): a third of the size of the numbers written out, which the
    browser decodes faster too."""
    return _packed(np.round(np.clip(_lower_triangle(weights), 0.0, 1.0) * 65535), "<u2")


def packed_scores(scores: np.ndarray) -> str:
    """The lower triangle of (T, T) attention scores (any sign and size) as base64 of little-endian
    float16: three significant digits, enough to read."""
    return _packed(_lower_triangle(scores), "<f2")


def token_strip(pieces: Sequence[str], styles: Sequence[str] | None = None,
                titles: Sequence[str] | None = None) -> str:
    """The text as focusable token boxes (``data-i`` = position); a newline token also breaks the line."""
    spans = []
    for i, piece in enumerate(pieces):
        style = f' style="{html.escape(styles[i])}"' if styles and styles[i] else ""
        title = f' title="{html.escape(titles[i])}"' if titles else ""
        shown = html.escape(visible_piece(piece) if piece.strip() != piece or not piece.isprintable() else piece)
        spans.append(f'<span class="gc-tok" data-i="{i}" tabindex="0"{style}{title}>{shown}</span>'
                     + ("<br>" if "\n" in piece else ""))
    return f'<div class="gc-tokens">{"".join(spans)}</div>'


def attention_html(pieces: Sequence[str], weights: np.ndarray, title: str, unit: str,
                   scores: np.ndarray | None = None) -> str:
    """One head's (T, T) attention: the text to hover and click, and a heatmap that zooms and scrolls.
    With the head's ``scores`` (q·k/sqrt(d) before the mask and softmax), the view also shows how the
    weights of the token in focus are made from them."""
    T = len(pieces)
    if weights.shape != (T, T) or (scores is not None and scores.shape != (T, T)):
        raise ValueError(f"attention of shape {weights.shape} does not match {T} tokens")
    steps = (f' data-scores="{packed_scores(scores)}"' if scores is not None else "")
    return (f'<div class="gc-view gc-att" data-jpieces="{_attr(list(pieces))}" '
            f'data-weights="{packed_weights(weights)}"{steps} '
            f'data-jlabels="{_attr([visible_piece(p) for p in pieces])}" data-dir="from" '
            f'data-hint="{html.escape(ATTENTION_HINT)}" data-unit="{unit}">'
            f'<p><b>{html.escape(title)}</b></p>'
            '<div class="gc-controls">'
            '<button data-act="from" aria-pressed="true">what a token looks at</button>'
            '<button data-act="to" aria-pressed="false">what looks at a token</button>'
            '<button data-act="zoom-out" aria-label="zoom out">−</button>'
            '<button data-act="zoom-in" aria-label="zoom in">+</button></div>'
            f'{token_strip(pieces)}<div class="gc-info" aria-live="polite">{html.escape(ATTENTION_HINT)}</div>'
            '<div class="gc-steps"></div><div class="gc-heat-wrap"><canvas class="gc-heat" aria-label="attention heatmap"></canvas></div>'
            '<div class="gc-tip"></div></div>')


def surprise_style(nats: float | None, scale: float = 5.0) -> str:
    """Red as deep as the token's loss (``scale`` nats and above: full); no colour for the first token."""
    if nats is None:
        return ""
    return f"background: rgba(220, 38, 38, {min(1.0, max(0.0, nats / scale)):.3f})"


def predictions_html(pieces: Sequence[str], probs: np.ndarray, surprise: np.ndarray, decode, unit: str,
                     model: str = "the model") -> str:
    """The text coloured by surprise; a click on a token shows the model's next-token distribution there.

    ``probs``: (T, vocab) next-token probabilities; ``surprise``: (T - 1,) loss of tokens 1 .. T-1;
    ``decode``: token id -> its text piece; ``model``: the model's name, said in the legend."""
    T = len(pieces)
    top = np.argsort(-probs, axis=-1)[:, :TOP_K]
    tops = [[[visible_piece(decode(int(t))), round(float(probs[i, t]), 5)] for t in top[i]] for i in range(T)]
    nexts = [[visible_piece(pieces[i + 1]), round(float(np.exp(-surprise[i])), 5), round(float(surprise[i]), 4)]
             for i in range(T - 1)] + [None]
    losses = [None] + [float(s) for s in surprise]
    titles = ["the first token: nothing to predict it from"] + [f"surprise {s:.2f} nats" for s in surprise]
    mean = f"{float(np.mean(surprise)):.3f}" if len(surprise) else "n/a"
    return (f'<div class="gc-view gc-pred" data-jtop="{_attr(tops)}" data-jnext="{_attr(nexts)}" '
            f'data-jlabels="{_attr([visible_piece(p) for p in pieces])}" data-unit="{unit}">'
            f'<p class="gc-legend">Each {unit} is as red as <b>{html.escape(model)}</b> was surprised by it (its loss, '
            f'−log p; white = expected, deep red = 5 nats or more). Mean over the text: <b>{mean} nats</b>. '
            f'Click a {unit} to see what the model expected after it.</p>'
            f'{token_strip(pieces, [surprise_style(s) for s in losses], titles)}'
            '<div class="gc-dist" aria-live="polite"></div></div>')


def stage_names(n_layer: int) -> list[str]:
    """The logit lens's rows: the residual stream after the embeddings, then after each layer."""
    return ["embeddings"] + [f"after layer {i + 1}" for i in range(n_layer - 1)] + [
        f"after layer {n_layer}: the model's prediction"]


def logit_lens_html(pieces: Sequence[str], lens: np.ndarray, decode, stage_names: Sequence[str]) -> str:
    """A table: one row per stage (embeddings, each layer), one column per position; each cell is the
    token that stage would predict next, shaded by its probability, its top 3 in the tooltip. Underlined:
    the prediction is the token that really comes next."""
    S, T, _ = lens.shape
    if len(stage_names) != S or len(pieces) != T:
        raise ValueError("the logit lens does not match its stage names or its text")
    top = np.argsort(-lens, axis=-1)[..., :3]
    head = "".join(f"<th>{html.escape(visible_piece(p))}</th>" for p in pieces)
    nexts = list(pieces[1:]) + [None]
    body = [f'<tr><th>position</th>{head}</tr>']
    for s in range(S):
        cells = []
        for i in range(T):
            best = [(decode(int(t)), float(lens[s, i, t])) for t in top[s, i]]
            piece, p = best[0]
            right = ' class="gc-right"' if nexts[i] is not None and piece == nexts[i] else ""
            tip = ", ".join(f"{visible_piece(x)} {q:.0%}" for x, q in best)
            cells.append(f'<td{right} style="background: rgba(37, 99, 235, {0.08 + 0.72 * p:.3f})" '
                         f'title="{html.escape(tip)}">{html.escape(visible_piece(piece))}</td>')
        body.append(f"<tr><td>{html.escape(stage_names[s])}</td>{''.join(cells)}</tr>")
    truth = "".join(f"<td>{html.escape(visible_piece(p)) if p is not None else '?'}</td>" for p in nexts)
    body.append(f"<tr><td>what really comes next</td>{truth}</tr>")
    return f'<div class="gc-view gc-lens"><table>{"".join(body)}</table></div>'


def loss_change_html(pieces: Sequence[str], base: np.ndarray, off: np.ndarray, unit: str,
                     legend: str | None = None) -> str:
    """The text coloured by how much each token's loss changes from ``base`` to ``off`` (heads switched off,
    or another model): red where it got worse at predicting it, blue where it got better. ``legend`` says
    what the change is (default: heads switched off)."""
    styles, titles = [""], [f"the first {unit}: not predicted"]
    for b, o in zip(base, off):
        delta = float(o - b)
        colour = "220, 38, 38" if delta > 0 else "37, 99, 235"
        styles.append(f"background: rgba({colour}, {min(1.0, abs(delta) / 2.0):.3f})")
        titles.append(f"loss {b:.2f} → {o:.2f} nats ({delta:+.2f})")
    legend = legend or (f"Red: the model predicts this {unit} worse with the heads off; blue: better; white: "
                        "unchanged")
    return (f'<div class="gc-view gc-off"><p class="gc-legend">{html.escape(legend)} (full colour at ±2 nats). '
            f'Hover or tap a token for numbers.</p>'
            f'{token_strip(pieces, styles, titles)}</div>')
