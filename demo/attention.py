"""Attention tab: heatmaps of what each head looks at, and a one-line role per head.

The model is run once on the text with ``model.attention_maps``; the figure shows one head, the average of
a layer's heads, every head of a layer, or every layer by every head (the model-wide view).
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

import gradio as gr
import numpy as np

if TYPE_CHECKING:
    from gptcore.checkpoint import Checkpoint

from .head_roles import describe_heads
from .plots import heatmap_figure, heatmap_grid_figure
from .explain import how_to_read
from .registry import ModelRegistry
from .settings import Limits
from .ui import checked_text, per_session, token_unit, user_errors

ALL, AVERAGE = "all", "average"
DEFAULT_TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"


@dataclass
class AttentionMaps:
    """The (cleaned, cropped) text, its tokens' text pieces, and every layer's attention as a
    (n_head, T, T) array over those T tokens."""

    text: str
    pieces: list[str]
    maps: list[np.ndarray]
    notices: list[str]


def layer_choices(n_layer: int) -> list[tuple[str, str]]:
    return [(f"layer {i + 1}", str(i + 1)) for i in range(n_layer)] + [("all layers (model-wide grid)", ALL)]


def head_choices(n_head: int) -> list[tuple[str, str]]:
    return [("all heads (grid)", ALL), ("average of the heads", AVERAGE)] + [
        (f"head {i + 1}", str(i + 1)) for i in range(n_head)]


def _parse_index(value, n: int, what: str, extra: tuple[str, ...]) -> int | str:
    """A 0-based index from a 1-based choice, or one of the named ``extra`` choices."""
    text = str(value).strip().lower() if value is not None else ""
    for name in extra:
        if text == name:
            return name
    try:
        index = int(text.removeprefix(what + " "))
    except ValueError:
        index = 0
    if not 1 <= index <= n:
        options = ", ".join([f"1-{n}", *extra])
        raise ValueError(f"{what} must be one of {options}; got {value!r:.80}")
    return index - 1


def compute_maps(ck: "Checkpoint", text: str | None) -> AttentionMaps:
    """Run the model on ``text`` (unknown characters replaced, cropped to block_size) and collect attention."""
    import torch  # imported on first use, so the app's first page does not wait for torch

    if ck.config.model.arch != "gpt" or not hasattr(ck.model, "attention_maps"):
        raise ValueError(f"checkpoint {ck.name!r} is a {ck.config.model.arch} model: it has no attention "
                         "layers to show; pick a GPT checkpoint")
    if not text:
        raise ValueError("type some text to look at (at least one character)")
    notices = []
    unknown = ck.tokenizer.unknown_chars(text)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:10])
        notices.append(f"The model does not know {shown}; they are replaced with spaces.")
        text = ck.tokenizer.clean(text, "replace")
        if not text:
            raise ValueError("none of the characters of this text are known to the model")
    block, ids = ck.config.model.block_size, ck.tokenizer.encode(text)
    if len(ids) > block:
        unit = token_unit(ck)
        notices.append(f"**Cropped:** showing the first {block} of {len(ids)} {unit}s "
                       f"(the model's context window, block_size, is {block} {unit}s).")
        ids = ids[:block]
        text = ck.tokenizer.decode(ids)
    idx = torch.tensor([ids], device=ck.device)
    maps = [m[0].float().cpu().numpy() for m in ck.model.attention_maps(idx)]
    return AttentionMaps(text, [ck.tokenizer.piece(i) for i in ids], maps, notices)


def attention_figure(am: AttentionMaps, layer: int | str, head: int | str):
    """The figure for a layer (index or ALL) and a head (index, ALL or AVERAGE)."""
    n_layer, n_head = len(am.maps), am.maps[0].shape[0]
    layers = range(n_layer) if layer == ALL else [layer]
    if layer != ALL and head not in (ALL, AVERAGE):
        return heatmap_figure(am.maps[layer][head], am.pieces, f"layer {layer + 1}, head {head + 1}")
    if layer != ALL and head == AVERAGE:
        return heatmap_figure(am.maps[layer].mean(0), am.pieces, f"layer {layer + 1}, average of {n_head} heads")
    if head == AVERAGE:
        grid = [[am.maps[i].mean(0)] for i in layers]
        cols = ["average of heads"]
    elif head == ALL:
        grid = [[am.maps[i][h] for h in range(n_head)] for i in layers]
        cols = [f"head {h + 1}" for h in range(n_head)]
    else:
        grid = [[am.maps[i][head]] for i in layers]
        cols = [f"head {head + 1}"]
    title = f"layer {layer + 1}" if layer != ALL else f"all {n_layer} layers"
    return heatmap_grid_figure(grid, am.pieces, [f"layer {i + 1}" for i in layers], cols, title)


def roles_markdown(am: AttentionMaps, layer: int | str) -> str:
    """A table of every head's role (for the chosen layer, or all layers)."""
    roles = describe_heads(am.maps, am.pieces)
    rows = ["| layer | head | what it mostly does on this text |", "|---|---|---|"]
    for i, layer_roles in enumerate(roles):
        if layer != ALL and i != layer:
            continue
        rows += [f"| {i + 1} | {h + 1} | {role.line()} |" for h, role in enumerate(layer_roles)]
    return "\n".join(rows)


def attention(registry: ModelRegistry, limits: Limits, checkpoint: str, text: str | None, layer: str,
              head: str):
    """(figure, markdown with notices and head roles) for the API and the UI."""
    with user_errors():
        text = checked_text("text", text, limits.max_attention_text_chars)
        ck = registry.get(checkpoint)
        am = compute_maps(ck, text)
        m = ck.config.model
        layer_index = _parse_index(layer, m.n_layer, "layer", (ALL,))
        head_index = _parse_index(head, m.n_head, "head", (ALL, AVERAGE))
        fig = attention_figure(am, layer_index, head_index)
        return fig, "\n\n".join(am.notices + [roles_markdown(am, layer_index)])


def selectors_for(registry: ModelRegistry, checkpoint: str, quiet: bool = False):
    """Layer and head dropdown updates that match the chosen checkpoint's shape.

    ``quiet`` (used when the page loads) leaves the selectors alone instead of raising for a bad checkpoint:
    the visitor has not asked for anything yet, and Show attention will explain the problem.
    """
    if quiet:
        try:
            return selectors_for(registry, checkpoint)
        except gr.Error:
            return gr.skip(), gr.skip()
    with user_errors():
        m = registry.get(checkpoint).config.model
        if m.arch != "gpt":
            raise ValueError(f"checkpoint {checkpoint!r:.80} has no attention layers; pick a GPT checkpoint")
        return (gr.update(choices=layer_choices(m.n_layer), value="1"),
                gr.update(choices=head_choices(m.n_head), value=ALL))


def build_tab(registry: ModelRegistry, limits: Limits) -> dict:
    default = registry.default(attention_only=True)
    shape = (4, 4)  # the write-up model's; corrected from the checkpoint as soon as the page loads
    how_to_read("attention")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=260):
            checkpoint = gr.Dropdown(registry.names(attention_only=True), value=default, label="checkpoint",
                                     allow_custom_value=True)
            text = gr.Textbox(DEFAULT_TEXT, label="text", lines=5,
                              info="longer than the context window? it is cropped, with a notice",
                              max_length=limits.max_attention_text_chars)
            layer = gr.Dropdown(layer_choices(shape[0]), value="1", label="layer", allow_custom_value=True)
            head = gr.Dropdown(head_choices(shape[1]), value=ALL, label="head", allow_custom_value=True)
            go = gr.Button("Show attention", variant="primary", elem_id="attention-btn")
        with gr.Column(scale=2, min_width=280):
            plot = gr.Plot(label="attention", show_label=False, elem_id="attention-plot", format="png")
            roles = gr.Markdown(elem_id="attention-roles")

    _attention = per_session(attention, registry, limits, gpu_seconds=20)  # keeps the parameter names for the API

    go.click(_attention, [checkpoint, text, layer, head], [plot, roles], api_name="attention",
             concurrency_limit=2)
    # choosing another layer or head redraws at once (only when a person changes it, not on updates)
    gr.on([layer.input, head.input], _attention, [checkpoint, text, layer, head], [plot, roles],
          api_visibility="private", concurrency_limit=2, trigger_mode="always_last")
    checkpoint.change(per_session(selectors_for, registry, quiet=False), checkpoint, [layer, head],
                      api_visibility="private", show_progress="hidden")
    return {"checkpoint": checkpoint, "selectors": (per_session(selectors_for, registry, quiet=True), checkpoint,
                                                    [layer, head])}
