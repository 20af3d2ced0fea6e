"""Matplotlib figures for the app: grids of attention heatmaps, embedding maps and ablation charts.

Figures are built with ``matplotlib.figure.Figure`` (not pyplot's global state) so concurrent requests never
draw into each other's figure; Gradio encodes and closes them. Matplotlib is imported on first use to keep
the app's start-up fast.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .tokens import visible_piece

MASKED_COLOUR = "#d4d4d4"
CMAP = "viridis"


def _figure(width: float, height: float, dpi: int = 100):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi, layout="constrained")


def _tick_fontsize(n: int) -> float:
    return 10 if n <= 24 else 8 if n <= 48 else 6 if n <= 80 else 4.5


def _masked(a: np.ndarray) -> np.ma.MaskedArray:
    """Hide the future (upper triangle) so the causal mask shows as its own grey colour."""
    T = a.shape[-1]
    return np.ma.masked_array(a, mask=np.triu(np.ones((T, T), dtype=bool), k=1))


def _cmap():
    import matplotlib

    return matplotlib.colormaps[CMAP].with_extremes(bad=MASKED_COLOUR)


def heatmap_grid_figure(matrices: Sequence[Sequence[np.ndarray]], pieces: Sequence[str], row_titles: list[str],
                        col_titles: list[str], title: str):
    """A grid of attention matrices (rows x columns) on a shared colour scale, with one colour bar."""
    rows, cols = len(matrices), len(matrices[0])
    T = len(pieces)
    panel = 2.6 if cols <= 4 else 2.0
    fig = _figure(panel * cols + 1.4, panel * rows + 0.8)
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    vmax = max(max(float(m.max()) for m in row) for row in matrices) or 1e-6
    labels = [visible_piece(p) for p in pieces] if T <= 40 else None
    image = None
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            image = ax.imshow(_masked(matrices[r][c]), cmap=_cmap(), vmin=0, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if labels:
                ax.set_xticks(range(T), labels, fontsize=_tick_fontsize(T) * 0.7)
                ax.set_yticks(range(T), labels, fontsize=_tick_fontsize(T) * 0.7)
                ax.tick_params(length=0, pad=1)
            if r == 0:
                ax.set_title(col_titles[c], fontsize=10)
            if c == 0:
                ax.set_ylabel(row_titles[r], fontsize=10)
    note = "" if labels else "\n(tokens are labelled up to 40; pick one head to read them)"
    fig.suptitle(f"{title} · rows: queries, columns: keys\ngrey: hidden by the causal mask{note}", fontsize=10)
    fig.colorbar(image, ax=axes, shrink=0.8, label="attention weight")
    return fig


# The Ablations tab's charts: small enough (in inches) that on a phone, drawn about 370 pixels wide, their
# 10-point labels stay readable (about 9 pixels); at 150 dpi they stay sharp when a laptop draws them wider.
ABLATION_FIGSIZE = (5.6, 4.0)


def ablation_summary_figure(labels: list[str], runs: list[list[float]], writeup: list[float | None],
                            xlabel: str, title: str, ordered: bool = True, unigram: float | None = None):
    """Final validation loss per arm: our mean ± std over seeds, each seed, and the original write-up's number.

    ``ordered``: the arms are values on a scale (1, 2, 4, 8 heads), so their means are joined by a line;
    categorical arms (pre- or post-norm, positions) are separate points, since a line would suggest a trend.
    ``unigram``: the loss of token frequencies alone, drawn where an arm comes near it (an arm that learned
    nothing about context); elsewhere it would only squash the arms into a corner of the chart."""
    import textwrap

    fig = _figure(*ABLATION_FIGSIZE, dpi=150)
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    means = np.array([np.mean(r) if r else np.nan for r in runs])
    stds = np.array([np.std(r, ddof=1) if len(r) > 1 else 0.0 for r in runs])  # sample std, as the tables
    for xi, values in zip(x, runs):
        ax.scatter([xi] * len(values), values, s=14, color="#1f77b4", alpha=0.35, zorder=2)
    n_seeds = sorted({len(r) for r in runs})
    seeds_text = "/".join(map(str, n_seeds))
    ax.errorbar(x, means, yerr=stds, fmt="o-" if ordered else "o", color="#1f77b4", capsize=4, zorder=3,
                label=f"ours: mean ± std of {seeds_text} seed(s); dots: single seeds")
    if any(w is not None for w in writeup):
        w = np.array([np.nan if v is None else v for v in writeup], dtype=float)
        ax.plot(x, w, "D--" if ordered else "D", color="#d62728", mfc="none", label="write-up")
    finite = [v for r in runs for v in r]
    if unigram is not None and finite and unigram <= max(finite) + 0.1 * (max(finite) - min(finite) or 1.0):
        ax.axhline(unigram, color="0.4", linestyle=":", linewidth=1.2, zorder=1,
                   label=f"unigram (token frequencies alone, no context): {unigram:.3f}")
    # long labels wrap onto several lines, and many arms tilt theirs, so neighbours never overlap
    width = 14 if len(labels) <= 4 else 10
    ax.set_xticks(x, ["\n".join(textwrap.wrap(label, width)) for label in labels],
                  rotation=0 if len(labels) <= 4 else 30, ha="center" if len(labels) <= 4 else "right",
                  fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("final validation loss")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8.5)
    return fig


def loss_curves_figure(series: list[tuple[str, list[list[tuple[int, float]]]]], title: str):
    """Validation loss against step: one colour per arm, one thin line per seed, a thick mean line."""
    fig = _figure(*ABLATION_FIGSIZE, dpi=150)
    ax = fig.add_subplot()
    import matplotlib

    colours = matplotlib.colormaps["tab10"]
    for k, (label, runs) in enumerate(series):
        colour = colours(k % 10)
        for run in runs:
            if run:
                steps, losses = zip(*run)
                ax.plot(steps, losses, color=colour, alpha=0.3, linewidth=0.8)
        steps_sets = {tuple(s for s, _ in run) for run in runs if run}
        if len(steps_sets) == 1:
            steps = next(iter(steps_sets))
            mean = np.mean([[v for _, v in run] for run in runs if run], axis=0)
            ax.plot(steps, mean, color=colour, linewidth=2, label=label)
        elif runs:
            ax.plot([], [], color=colour, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8.5)
    return fig


MAX_MAP_LABELS = 160  # beyond this, labels are thinned to one per patch of the map so they stay readable


def _spread_labels(coords: np.ndarray, cells: int = 14) -> list[int]:
    """Indices of points to label: all of them if few, else the one nearest each occupied patch's centre."""
    if len(coords) <= MAX_MAP_LABELS:
        return list(range(len(coords)))
    low, high = coords.min(0), coords.max(0)
    scaled = (coords - low) / np.where(high > low, high - low, 1) * (cells - 1e-9)
    cell = np.floor(scaled).astype(int)
    chosen: dict[tuple[int, int], int] = {}
    for i, (c, s) in enumerate(zip(map(tuple, cell), scaled)):
        j = chosen.get(c)
        if j is None or np.linalg.norm(s - cell[i] - 0.5) < np.linalg.norm(scaled[j] - cell[j] - 0.5):
            chosen[c] = i
    return sorted(chosen.values())


def embedding_map_figure(coords: np.ndarray, pieces: Sequence[str], explained: Sequence[float]):
    """The token embeddings on their two principal directions, each point labelled with its token's text."""
    fig = _figure(7.5, 6.5)
    ax = fig.add_subplot()
    shown = _spread_labels(coords)
    unlabelled = np.setdiff1d(np.arange(len(coords)), shown)
    ax.scatter(coords[unlabelled, 0], coords[unlabelled, 1], s=6, color="#93c5fd", zorder=1)
    ax.update_datalim(coords)  # labels are texts, which do not widen the axes by themselves
    ax.margins(0.06)
    ax.autoscale_view()
    for i in shown:
        ax.text(coords[i, 0], coords[i, 1], visible_piece(pieces[i]), fontsize=12 if len(shown) <= 80 else 8,
                ha="center", va="center", zorder=2, family="monospace")
    ax.set_xlabel(f"first principal direction ({explained[0]:.0%} of the variance)", fontsize=9)
    ax.set_ylabel(f"second principal direction ({explained[1]:.0%} of the variance)", fontsize=9)
    thinned = "" if len(shown) == len(coords) else f"; {len(shown)} of {len(coords)} labelled"
    ax.set_title(f"token embeddings, {len(coords)} tokens{thinned}", fontsize=10)
    return fig


def position_similarity_figure(similarity: np.ndarray):
    """Cosine similarity between every pair of learned position embeddings."""
    fig = _figure(6.2, 5.4)
    ax = fig.add_subplot()
    image = ax.imshow(similarity, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xlabel("position", fontsize=9)
    ax.set_ylabel("position", fontsize=9)
    ax.set_title("learned position embeddings: how alike two positions are (cosine)", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label="cosine similarity")
    return fig


def rope_figure(wavelengths: np.ndarray, block_size: int):
    """Rotary positions: the angle each pair of a head's dimensions turns through, position by position."""
    fig = _figure(6.8, 5.0)
    ax = fig.add_subplot()
    positions = np.arange(block_size)[:, None]
    angles = np.cos(2 * np.pi * positions / np.asarray(wavelengths)[None, :])
    image = ax.imshow(angles.T, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xlabel("position", fontsize=9)
    ax.set_ylabel("rotating pair (fast at the top, slow at the bottom)", fontsize=9)
    ax.set_title(f"rotary positions: cos(angle) of each pair; wavelengths {wavelengths[0]:.1f} to "
                 f"{wavelengths[-1]:,.0f} positions", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label="cos of the rotation angle")
    return fig
