"""Inside tab: the prediction at every position (and how surprised the model is by each token), what each
layer would predict (the logit lens), the embeddings as maps, and the model with heads switched off.

Every view runs the model's own forward pass through :mod:`gptcore.interpret`; the HTML comes from
:mod:`demo.views.html`. Each view has a data endpoint (``gr.api``) that gives its numbers to API callers.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Sequence

import gradio as gr

from ..views.explain import how_to_read
from ..views.model_input import DEFAULT_TEXT, ModelInput, model_input
from ..views.plots import embedding_map_figure, position_similarity_figure, rope_figure
from ..server.registry import ModelRegistry
from ..server.settings import Limits
from ..server.inputs import checked_text, user_errors
from ..server.sessions import per_session
from ..views.tokens import token_unit, visible_piece
from ..views.html import (CSS, interactive_script, logit_lens_html, loss_change_html, predictions_html,
                          stage_names)

if TYPE_CHECKING:
    from gptcore.checkpoint import Checkpoint

TOP = 5  # predictions listed per position in the API's answers and the heads-off summary
MAX_PRIVATE_COPIES = 4  # models kept for switching heads off (see private_model)
_copies: "OrderedDict[int, tuple[object, object, threading.Lock]]" = OrderedDict()
_copies_lock = threading.Lock()


@contextlib.contextmanager
def private_model(ck: "Checkpoint"):
    """A copy of ``ck``'s model for switching heads off, used by one request at a time.

    Switching a head off sets a mask on the model; the registry's model is shared by every visitor, and
    one who is sampling must never get another's ablation. The copy is made once per loaded model (a few
    MB for the shipped one) and the most recent few are kept."""
    import copy

    key = id(ck.model)
    with _copies_lock:
        entry = _copies.get(key)
        if entry is None or entry[0] is not ck.model:  # an id reused by a newly loaded model
            entry = (ck.model, copy.deepcopy(ck.model).eval(), threading.Lock())
            _copies[key] = entry
        _copies.move_to_end(key)
        while len(_copies) > MAX_PRIVATE_COPIES:
            _copies.popitem(last=False)
    with entry[2]:
        yield entry[1]


def _prepared(registry: ModelRegistry, limits: Limits, checkpoint: str, text: str | None
              ) -> tuple["Checkpoint", ModelInput]:
    text = checked_text("text", text, limits.max_attention_text_chars)
    ck = registry.get(checkpoint)
    return ck, model_input(ck, text)


def _notes(given: ModelInput) -> str:
    return "\n\n".join(given.notices)


def _top(probs, decode, k: int = TOP) -> list[list]:
    """[[token text, probability], ...] of the ``k`` most likely tokens of a (vocab,) distribution."""
    values, ids = probs.topk(min(k, probs.numel()))
    return [[decode(int(i)), round(float(v), 5)] for v, i in zip(values, ids)]


# ---- predictions and surprise ---------------------------------------------------------------------------

def _predictions(ck: "Checkpoint", given: ModelInput):
    from gptcore.interpret import read_text

    return read_text(ck.model, given.ids)


def predictions_view(registry: ModelRegistry, limits: Limits, checkpoint: str, text: str | None):
    """(the text coloured by surprise, with the distribution at a clicked token; notices)."""
    with user_errors():
        ck, given = _prepared(registry, limits, checkpoint, text)
        probs, loss = _predictions(ck, given)
        return (predictions_html(given.pieces, probs.numpy(), loss.numpy(), ck.tokenizer.piece, token_unit(ck),
                                 checkpoint),
                _notes(given))


def predictions_api(registry: ModelRegistry, limits: Limits, checkpoint: str, text: str) -> dict:
    """At every position of the text: the most likely next tokens with their probabilities (``top``), and
    how surprised the model is by the token that really follows (``surprise``, in nats: -log p). The mean
    surprise is the text's loss."""
    with user_errors():
        ck, given = _prepared(registry, limits, checkpoint, text)
        probs, loss = _predictions(ck, given)
        return {"tokens": given.pieces, "top": [_top(p, ck.tokenizer.piece) for p in probs],
                "surprise": [round(float(x), 5) for x in loss], "mean_surprise": float(loss.mean()) if len(loss)
                else None, "notices": given.notices}


# ---- logit lens -----------------------------------------------------------------------------------------

def logit_lens_view(registry: ModelRegistry, limits: Limits, checkpoint: str, text: str | None):
    """(a table of what each layer would predict at each position; notices)."""
    from gptcore.interpret import logit_lens as lens

    with user_errors():
        ck, given = _prepared(registry, limits, checkpoint, text)
        table = lens(ck.model, given.ids).numpy()
        return (logit_lens_html(given.pieces, table, ck.tokenizer.piece, stage_names(ck.config.model.n_layer)),
                _notes(given))


def logit_lens_api(registry: ModelRegistry, limits: Limits, checkpoint: str, text: str) -> dict:
    """For each stage (after the embeddings, after each layer) and each position: the tokens that stage's
    residual stream would predict next, put through the final norm and the output head. The last stage is
    the model's own prediction."""
    from gptcore.interpret import logit_lens as lens

    with user_errors():
        ck, given = _prepared(registry, limits, checkpoint, text)
        table = lens(ck.model, given.ids)
        return {"stages": stage_names(ck.config.model.n_layer), "tokens": given.pieces,
                "top": [[_top(p, ck.tokenizer.piece, 3) for p in stage] for stage in table],
                "notices": given.notices}


# ---- embeddings -----------------------------------------------------------------------------------------

def _gpt(registry: ModelRegistry, checkpoint: str) -> "Checkpoint":
    ck = registry.get(checkpoint)
    if ck.config.model.arch != "gpt":
        raise ValueError(f"checkpoint {checkpoint!r:.80} is a {ck.config.model.arch} model; pick a GPT checkpoint")
    return ck


def embeddings_view(registry: ModelRegistry, checkpoint: str):
    """(map of the token embeddings, picture of the positions, a sentence about each)."""
    from gptcore.interpret import embedding_pca, position_similarity, rope_wavelengths

    with user_errors():
        ck = _gpt(registry, checkpoint)
        coords, explained = embedding_pca(ck.model)
        pieces = [ck.tokenizer.piece(i) for i in range(ck.config.model.vocab_size)]
        token_map = embedding_map_figure(coords.numpy(), pieces, explained.tolist())
        similarity, wavelengths = position_similarity(ck.model), rope_wavelengths(ck.model)
        m = ck.config.model
        if similarity is not None:
            positions = position_similarity_figure(similarity.numpy())
            words = (f"Learned position embeddings: one vector for each of the {m.block_size} positions, added to the "
                     "token's. Nearby positions usually learn similar vectors: a bright band along the diagonal.")
        elif wavelengths is not None:
            positions = rope_figure(wavelengths.numpy(), m.block_size)
            words = ("Rotary positions (RoPE): no position vectors; queries and keys are rotated by angles that grow "
                     "with the position, each pair of dimensions at its own speed.")
        else:
            positions, words = None, "This model has no positional information at all (pos_emb = none)."
        share = float(explained.sum())
        return (token_map, gr.update(value=positions, visible=positions is not None),
                f"The two directions shown hold {share:.0%} of the variance of the {m.vocab_size} × {m.n_embd} "
                f"embedding table. {words}")


def embeddings_api(registry: ModelRegistry, checkpoint: str) -> dict:
    """The token embedding table on its two principal directions (``coords``, one [x, y] per token) with
    the share of variance each explains; the learned positions' cosine similarity, or the rotary
    wavelengths (in positions), as the model has."""
    from gptcore.interpret import embedding_pca, position_similarity, rope_wavelengths

    with user_errors():
        ck = _gpt(registry, checkpoint)
        coords, explained = embedding_pca(ck.model)
        similarity, wavelengths = position_similarity(ck.model), rope_wavelengths(ck.model)
        return {"tokens": [ck.tokenizer.piece(i) for i in range(ck.config.model.vocab_size)],
                "coords": coords.round(decimals=5).tolist(), "explained": explained.tolist(),
                "position_similarity": None if similarity is None else similarity.round(decimals=4).tolist(),
                "rope_wavelengths": None if wavelengths is None else wavelengths.tolist()}


# ---- heads off ------------------------------------------------------------------------------------------

def head_value(layer: int, head: int) -> str:
    return f"{layer + 1}.{head + 1}"


def head_options(n_layer: int, n_head: int) -> list[tuple[str, str]]:
    return [(f"L{i + 1} H{h + 1}", head_value(i, h)) for i in range(n_layer) for h in range(n_head)]


def parse_heads(values, n_layer: int, n_head: int) -> list[tuple[int, int]]:
    """0-based (layer, head) pairs from "layer.head" strings (1-based), refusing what the model lacks."""
    if values is None:
        return []
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise ValueError(f'heads must be a list like ["1.2", "3.1"] (layer.head), got {values!r:.80}')
    pairs = []
    for value in values:
        try:
            layer, head = (int(part) for part in str(value).split("."))
        except ValueError:
            raise ValueError(f'a head is written layer.head, like "1.2"; got {value!r:.40}') from None
        if not (1 <= layer <= n_layer and 1 <= head <= n_head):
            raise ValueError(f"no head {value!r:.40}: the model has {n_layer} layers of {n_head} heads")
        pairs.append((layer - 1, head - 1))
    return sorted(set(pairs))


def _off(ck: "Checkpoint", given: ModelInput, pairs: list[tuple[int, int]]):
    """(baseline per-token loss, per-token loss with the heads off, last-position distributions on and off)."""
    from gptcore.interpret import heads_off as switched_off, read_text

    base_probs, base = read_text(ck.model, given.ids)
    with private_model(ck) as model, switched_off(model, pairs):
        off_probs, off = read_text(model, given.ids)
    return base, off, base_probs[-1], off_probs[-1]


def _named(pairs: list[tuple[int, int]]) -> str:
    return ", ".join(f"layer {layer + 1} head {head + 1}" for layer, head in pairs)


def heads_off_view(registry: ModelRegistry, limits: Limits, checkpoint: str, text: str | None, heads: list[str] | None):
    """(a summary of what changes, the text coloured by the change in each token's loss)."""
    with user_errors():
        ck, given = _prepared(registry, limits, checkpoint, text)
        m = ck.config.model
        pairs, unit = parse_heads(heads, m.n_layer, m.n_head), token_unit(ck)
        if len(given.ids) < 2:
            return f"Type at least two {unit}s: the loss is measured on the {unit}s after the first.", ""
        base, off, base_probs, off_probs = _off(ck, given, pairs)

        def shown(probs) -> str:
            return ", ".join(f"`{visible_piece(t)}` {p:.0%}" for t, p in _top(probs, ck.tokenizer.piece))
        if not pairs:
            head = "Every head is on: tick heads above to switch them off."
        else:
            delta = float(off.mean() - base.mean())
            head = (f"With **{_named(pairs)}** off, the loss on this text goes from **{base.mean():.3f}** to "
                    f"**{off.mean():.3f}** nats per {unit} ({delta:+.3f}).")
        lines = [head, "", f"What comes after the text's last {unit}:", "",
                 f"- every head on: {shown(base_probs)}"]
        if pairs:
            lines.append(f"- with these heads off: {shown(off_probs)}")
        return "\n".join(lines), loss_change_html(given.pieces, base.numpy(), off.numpy(), unit)


def heads_off_api(registry: ModelRegistry, limits: Limits, checkpoint: str, text: str, heads: list[str]) -> dict:
    """The text's loss with every head on (``baseline``) and with ``heads`` off (``loss``), both in nats per
    token, each token's loss either way, and the most likely next tokens after the text either way. Heads
    are written "layer.head", counting from 1: ["1.2", "3.1"]."""
    with user_errors():
        ck, given = _prepared(registry, limits, checkpoint, text)
        m = ck.config.model
        pairs = parse_heads(heads, m.n_layer, m.n_head)
        base, off, base_probs, off_probs = _off(ck, given, pairs)
        return {"heads_off": [head_value(*p) for p in pairs], "tokens": given.pieces,
                "baseline": float(base.mean()) if len(base) else None, "loss": float(off.mean()) if len(off) else None,
                "baseline_per_token": base.round(decimals=5).tolist(), "loss_per_token": off.round(decimals=5).tolist(),
                "next_baseline": _top(base_probs, ck.tokenizer.piece), "next": _top(off_probs, ck.tokenizer.piece),
                "notices": given.notices}


EACH_HEAD_COLUMNS = ["head", "loss with it off", "change"]


def each_head(registry: ModelRegistry, limits: Limits, checkpoint: str, text: str | None) -> list[list]:
    """One head off at a time, most harmful first: which heads this text needs."""
    from gptcore.interpret import each_head_off

    with user_errors():
        ck, given = _prepared(registry, limits, checkpoint, text)
        if len(given.ids) < 2:
            return []
        with private_model(ck) as model:
            baseline, losses = each_head_off(model, given.ids)
        rows = [[f"L{layer + 1} H{head + 1}", round(float(loss), 4), round(float(loss) - baseline, 4)]
                for layer, row in enumerate(losses) for head, loss in enumerate(row)]
        return sorted(rows, key=lambda r: -r[2])


def heads_for(registry: ModelRegistry, checkpoint: str, quiet: bool = False):
    """The head checkboxes for the chosen checkpoint's shape, all off (switched on)."""
    try:
        m = _gpt(registry, checkpoint).config.model
    except Exception:  # noqa: BLE001 - the views say what is wrong when someone asks for one
        if quiet:
            return gr.skip()
        raise
    return gr.update(choices=head_options(m.n_layer, m.n_head), value=[])


# ---- the tab --------------------------------------------------------------------------------------------

def build_tab(registry: ModelRegistry, limits: Limits, more_views: Sequence[Callable] = ()) -> dict:
    """The tab; each of ``more_views`` is called as ``view(registry, limits, checkpoint, text, button)`` among
    the tab's views, to add one of its own that runs on the same model, text and button."""
    default = registry.default(attention_only=True)
    how_to_read("inside")
    with gr.Row(equal_height=False):
        checkpoint = gr.Dropdown(registry.names(attention_only=True), value=default, label="checkpoint",
                                 allow_custom_value=True, scale=1, min_width=220)
        text = gr.Textbox(DEFAULT_TEXT, label="text", lines=3, scale=3, min_width=260, elem_id="inside-text",
                          max_length=limits.max_attention_text_chars,
                          info="longer than the context window? it is cropped, with a notice")
    go = gr.Button("Look inside", variant="primary", elem_id="inside-btn")
    notes = gr.Markdown(elem_id="inside-notes")
    with gr.Tabs(overflow_behavior="wrap") as view_tabs:  # on a phone every view stays visible
        with gr.Tab("Predictions", id="inside-predictions"):
            how_to_read("predictions")
            pred = gr.HTML("", elem_id="inside-predictions-view", js_on_load=interactive_script(), css_template=CSS)
        with gr.Tab("Logit lens", id="inside-lens"):
            how_to_read("lens")
            lens = gr.HTML("", elem_id="inside-lens-view", css_template=CSS, js_on_load=None)  # tooltips only
        with gr.Tab("Embeddings", id="inside-embeddings"):
            how_to_read("embeddings")
            emb_note = gr.Markdown(elem_id="inside-embeddings-note")
            with gr.Row():
                emb_map = gr.Plot(show_label=False, elem_id="inside-embeddings-map", format="png")
                emb_pos = gr.Plot(show_label=False, elem_id="inside-positions", format="png")
        with gr.Tab("Switch heads off", id="inside-heads"):
            how_to_read("heads_off")
            heads = gr.CheckboxGroup(head_options(4, 4), value=[], label="heads to switch off",
                                     elem_id="inside-heads-choice")
            with gr.Row(equal_height=False):
                with gr.Column(scale=2, min_width=280):
                    off_summary = gr.Markdown(elem_id="inside-heads-summary")
                    off_view = gr.HTML("", elem_id="inside-heads-view", css_template=CSS, js_on_load=None)
                with gr.Column(scale=1, min_width=220):
                    ranking = gr.Dataframe(headers=EACH_HEAD_COLUMNS, datatype=["str", "number", "number"],
                                           interactive=False, elem_id="inside-each-head",
                                           label="one head off at a time: the loss on this text (nats)")
        added = [view(registry, limits, checkpoint, text, go) for view in more_views]

    session = dict(gpu_seconds=20)
    _pred = per_session(predictions_view, registry, limits, **session)
    _lens = per_session(logit_lens_view, registry, limits, **session)
    _emb = per_session(embeddings_view, registry, **session)
    _off = per_session(heads_off_view, registry, limits, **session)
    _each = per_session(each_head, registry, limits, **session)
    views = limits.views_queue()
    # a press while the views are still being made (as the tab opened, say) is kept for after them, never dropped
    private = dict(api_visibility="private", trigger_mode="always_last", **views)
    for trigger in (go.click, text.submit):
        trigger(_pred, [checkpoint, text], [pred, notes], **private)
        trigger(_lens, [checkpoint, text], [lens, notes], **private)
        trigger(_off, [checkpoint, text, heads], [off_summary, off_view], **private)
        trigger(_each, [checkpoint, text], ranking, **private)
    go.click(_emb, checkpoint, [emb_map, emb_pos, emb_note], **private)
    heads.input(_off, [checkpoint, text, heads], [off_summary, off_view], **private)
    checkpoint.change(per_session(heads_for, registry), checkpoint, heads, api_visibility="private",
                      show_progress="hidden")
    for fn, name in ((predictions_api, "predictions"), (logit_lens_api, "logit_lens"), (heads_off_api, "heads_off")):
        gr.api(per_session(fn, registry, limits, **session), api_name=name, **views)  # the numbers of each view
    gr.api(per_session(embeddings_api, registry, **session), api_name="embeddings", **views)
    return {"checkpoint": checkpoint, "load": (per_session(heads_for, registry, quiet=True), checkpoint, heads),
            "views": view_tabs, "added": added}
