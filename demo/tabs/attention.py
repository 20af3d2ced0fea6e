"""Attention tab: what each head looks at, interactively, and a one-line role per head.

The model is run once on the text with ``model.attention_maps``. One head (or a layer's average) is shown
as an interactive view (hover a token: what it looks at; the heatmap zooms and scrolls); every head of a
layer, or every layer by every head, as a static grid picture. Clicking a row of the roles table shows
that head.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

import gradio as gr
import numpy as np

if TYPE_CHECKING:
    from gptcore.checkpoint import Checkpoint

from gptcore.head_roles import describe_heads
from ..views.plots import heatmap_grid_figure
from ..views.html import CSS, interactive_script, attention_html
from ..views.explain import how_to_read
from ..views.model_input import DEFAULT_TEXT, model_input
from ..server.registry import ModelRegistry
from ..server.settings import Limits
from ..server.inputs import checked_text, user_errors
from ..server.sessions import per_session
from ..views.tokens import token_unit

ALL, AVERAGE = "all", "average"


@dataclass
class AttentionMaps:
    """The (cleaned, cropped) text, its token ids and their text pieces, and every layer's attention as a
    (n_head, T, T) array over those T tokens."""

    text: str
    ids: list[int]
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

    given = model_input(ck, text)
    idx = torch.tensor([given.ids], device=ck.device)
    maps = [m[0].float().cpu().numpy() for m in ck.model.attention_maps(idx)]
    return AttentionMaps(given.text, given.ids, given.pieces, maps, given.notices)


def attention_figure(am: AttentionMaps, layer: int | str, head: int | str):
    """The grid picture for several maps at once: every layer (``layer`` is ALL) or every head (``head``
    is ALL); one head or a layer's average is the interactive view instead (:func:`attention_view`)."""
    n_layer, n_head = len(am.maps), am.maps[0].shape[0]
    layers = range(n_layer) if layer == ALL else [layer]
    if ALL not in (layer, head):
        raise ValueError("one head, or one layer's average, is drawn by the interactive view, not as a grid")
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


ROLE_COLUMNS = ["layer", "head", "what it mostly does on this text"]


def roles_rows(am: AttentionMaps, layer: int | str) -> list[list]:
    """One row per head (of the chosen layer, or of every layer): layer, head, its measured role."""
    roles = describe_heads(am.maps, am.pieces)
    return [[i + 1, h + 1, role.line()] for i, layer_roles in enumerate(roles) if layer in (ALL, i)
            for h, role in enumerate(layer_roles)]


@dataclass
class AttentionView:
    """What the tab shows: the interactive view of one head (or a layer's average), or a static grid of
    several; the heads' roles; notices about the text."""

    html: str | None
    figure: object | None
    roles: list[list]
    notes: str


def _maps_for(registry: ModelRegistry, limits: Limits, checkpoint: str, text: str | None, layer, head,
              extra_layer: tuple[str, ...], extra_head: tuple[str, ...]):
    """(checkpoint, its attention on the checked text, the layer and head chosen), or a ValueError in words."""
    text = checked_text("text", text, limits.max_attention_text_chars)
    ck = registry.get(checkpoint)
    am = compute_maps(ck, text)
    m = ck.config.model
    return (ck, am, _parse_index(layer, m.n_layer, "layer", extra_layer),
            _parse_index(head, m.n_head, "head", extra_head))


def attention_view(registry: ModelRegistry, limits: Limits, checkpoint: str, text: str | None, layer: str,
                   head: str) -> AttentionView:
    with user_errors():
        ck, am, layer_index, head_index = _maps_for(registry, limits, checkpoint, text, layer, head, (ALL,),
                                                    (ALL, AVERAGE))
        m = ck.config.model
        roles, notes = roles_rows(am, layer_index), "\n\n".join(am.notices)
        if ALL in (layer_index, head_index):
            return AttentionView(None, attention_figure(am, layer_index, head_index), roles, notes)
        if head_index == AVERAGE:  # an average of heads has no scores of its own
            weights, scores = am.maps[layer_index].mean(0), None
            title = f"{checkpoint} · layer {layer_index + 1}, average of {m.n_head} heads"
        else:
            weights = am.maps[layer_index][head_index]
            title = f"{checkpoint} · layer {layer_index + 1}, head {head_index + 1}"
            scores = head_scores(ck, am, layer_index, head_index)
        return AttentionView(attention_html(am.pieces, weights, title, token_unit(ck), scores), None, roles, notes)


def head_scores(ck: "Checkpoint", am: AttentionMaps, layer: int, head: int) -> np.ndarray:
    """One head's scores q·k/sqrt(d) on the text, before the mask and the softmax."""
    import torch

    idx = torch.tensor([am.ids], device=ck.device)
    return ck.model.attention_scores(idx)[layer][0, head].cpu().numpy()


def show_attention(registry: ModelRegistry, limits: Limits, checkpoint: str, text: str | None, layer: str,
                   head: str):
    """(interactive view, grid picture, head roles, notices): one of the first two is shown."""
    view = attention_view(registry, limits, checkpoint, text, layer, head)
    return (gr.update(value=view.html or "", visible=view.html is not None),
            gr.update(value=view.figure, visible=view.figure is not None),
            view.roles, view.notes)


def attention_weights(registry: ModelRegistry, limits: Limits, checkpoint: str, text: str, layer: int,
                      head: int) -> dict:
    """One head's attention on a text, as numbers: ``weights[q][k]`` is how much token q takes from token
    k (k <= q), the softmax of ``scores[q]`` (q·k/sqrt(head size)); ``role`` is what the head mostly does
    on this text. Layers and heads count from 1."""
    with user_errors():
        ck, am, layer_index, head_index = _maps_for(registry, limits, checkpoint, text, layer, head, (), ())
        weights = am.maps[layer_index][head_index]
        scores = head_scores(ck, am, layer_index, head_index)
        role = describe_heads([am.maps[layer_index]], am.pieces)[0][head_index]
        rows = range(len(am.pieces))
        return {"tokens": am.pieces, "weights": [weights[q, :q + 1].round(5).tolist() for q in rows],
                "scores": [scores[q, :q + 1].round(4).tolist() for q in rows], "role": role.line(),
                "notices": am.notices}


def select_head(roles, evt: gr.SelectData):
    """A click on a row of the roles table shows that head."""
    row = evt.row_value if getattr(evt, "row_value", None) else roles.iloc[evt.index[0]].tolist()
    return str(int(row[0])), str(int(row[1]))


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
                gr.update(choices=head_choices(m.n_head), value="1"))


def build_tab(registry: ModelRegistry, limits: Limits) -> dict:
    default = registry.default(attention_only=True)
    shape = (4, 4)  # the original write-up model's; corrected from the checkpoint as soon as the page loads
    how_to_read("attention")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=260):
            checkpoint = gr.Dropdown(registry.names(attention_only=True), value=default, label="checkpoint",
                                     allow_custom_value=True)
            text = gr.Textbox(DEFAULT_TEXT, label="text", lines=5, elem_id="attention-text",
                              info="longer than the context window? it is cropped, with a notice",
                              max_length=limits.max_attention_text_chars)
            with gr.Row():
                layer = gr.Dropdown(layer_choices(shape[0]), value="1", label="layer", allow_custom_value=True,
                                    min_width=120)
                head = gr.Dropdown(head_choices(shape[1]), value="1", label="head", allow_custom_value=True,
                                   min_width=120)
            go = gr.Button("Show attention", variant="primary", elem_id="attention-btn")
            notes = gr.Markdown(elem_id="attention-notes")
        with gr.Column(scale=2, min_width=280):
            view = gr.HTML("", elem_id="attention-view", js_on_load=interactive_script(), css_template=CSS, min_height=120)
            plot = gr.Plot(label="attention", show_label=False, elem_id="attention-plot", format="png",
                           visible=False)
            roles = gr.Dataframe(headers=ROLE_COLUMNS, datatype=["number", "number", "str"], interactive=False,
                                 wrap=True, elem_id="attention-roles", column_widths=["12%", "12%", "76%"], 
                                 label="the heads (click a row to show that head)")

    _attention = per_session(show_attention, registry, limits, gpu_seconds=20)  # keeps the parameter names for the API
    outputs = [view, plot, roles, notes]
    views = limits.views_queue()
    # a press while the view is still being made (the first one, say, made as the tab opened) is kept for
    # after it, never dropped
    for trigger in (go.click, text.submit):
        trigger(_attention, [checkpoint, text, layer, head], outputs, api_visibility="private",
                trigger_mode="always_last", **views)
    # choosing another layer or head redraws at once (only when a person changes it, not on updates)
    gr.on([layer.input, head.input], _attention, [checkpoint, text, layer, head], outputs,
          api_visibility="private", **views, trigger_mode="always_last")
    roles.select(select_head, roles, [layer, head], api_visibility="private", show_progress="hidden").then(
        _attention, [checkpoint, text, layer, head], outputs, api_visibility="private", **views)
    gr.api(per_session(attention_weights, registry, limits, gpu_seconds=20), api_name="attention",  # the numbers
           **views)
    checkpoint.change(per_session(selectors_for, registry, quiet=False), checkpoint, [layer, head],
                      api_visibility="private", show_progress="hidden")
    return {"checkpoint": checkpoint, "text": text,
            "selectors": (per_session(selectors_for, registry, quiet=True), checkpoint, [layer, head])}
