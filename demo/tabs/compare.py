"""The Inside tab's comparison: the same text through a second model, token by token.

Where the second model predicts each token better or worse than the first (their surprise, aligned), what
each layer of each would predict (the logit lens of both), and the two models' head roles side by side.
Both must read text the same way (one tokenizer); the text is cropped to the smaller of their contexts.
Built by ``demo/app.py`` into the Inside tab's views, so that the tab modules stay apart.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import gradio as gr
import numpy as np

from gptcore.bounded import read_json_file
from gptcore.checkpoint import TOKENIZER
from gptcore.errors import GptcoreError

from ..server.inputs import checked_text, user_errors, without_paths
from ..server.registry import ModelRegistry
from ..server.sessions import per_session
from ..server.settings import Limits
from ..views.html import CSS, logit_lens_html, loss_change_html, stage_names
from ..views.model_input import ModelInput, model_input
from ..views.tokens import token_unit

if TYPE_CHECKING:
    from gptcore.checkpoint import Checkpoint

ROLES_CSS = """
.gc-compare-roles table { border-collapse: collapse; font-size: 13px; width: 100%; }
.gc-compare-roles th, .gc-compare-roles td { border: 1px solid #e5e7eb; padding: 2px 6px; text-align: left;
  vertical-align: top; }
"""


def _tokenizer_words(ck: "Checkpoint") -> str:
    t = ck.tokenizer
    if t.type_name == "char":
        return f"{t.vocab_size:,} characters"
    return f"a {t.vocab_size:,}-token {t.type_name} vocabulary"


def compared_inputs(registry: ModelRegistry, limits: Limits, first: str, second: str, text: str | None
                    ) -> tuple["Checkpoint", "Checkpoint", ModelInput]:
    """Both checkpoints and the text as both read it, or a ValueError in words (different tokenizers)."""
    text = checked_text("text", text, limits.max_attention_text_chars)
    a, b = registry.get(first), registry.get(second)
    for name, ck in ((first, a), (second, b)):
        if ck.config.model.arch != "gpt":
            raise ValueError(f"checkpoint {name!r:.80} is a {ck.config.model.arch} model; compare GPT checkpoints")
    if a.tokenizer.to_dict() != b.tokenizer.to_dict():
        raise ValueError(f"{first} and {second} read text differently ({_tokenizer_words(a)} against "
                         f"{_tokenizer_words(b)}): compare two models that share a tokenizer")
    shorter = a if a.config.model.block_size <= b.config.model.block_size else b
    return a, b, model_input(shorter, text)


def _numbers(a: "Checkpoint", b: "Checkpoint", given: ModelInput) -> dict:
    from gptcore.interpret import compare_surprise, head_roles, logit_lens

    first, second = compare_surprise(a.model, b.model, given.ids)
    return {"surprise": (first.numpy(), second.numpy()),
            "lens": (logit_lens(a.model, given.ids).numpy(), logit_lens(b.model, given.ids).numpy()),
            "roles": (head_roles(a.model, given.ids, given.pieces), head_roles(b.model, given.ids, given.pieces))}


def summary(first: str, second: str, surprise: tuple[np.ndarray, np.ndarray], unit: str) -> str:
    a, b = surprise
    if len(a) == 0:
        return f"Type at least two {unit}s: the loss is measured on the {unit}s after the first."
    if np.array_equal(a, b):
        return f"**{first}** and **{second}** predict every {unit} of this text alike: no differences."
    better, worse = int((b < a).sum()), int((b > a).sum())
    return (f"On this text **{first}** loses **{a.mean():.3f}** nats per {unit} and **{second}** "
            f"**{b.mean():.3f}** ({b.mean() - a.mean():+.3f}). {second} predicts {better} of the {len(a)} {unit}s "
            f"better and {worse} worse.")


def roles_table(first: str, second: str, roles: tuple[list, list]) -> str:
    """Every head of either model, the first's role beside the second's (blank where a model has no such head)."""
    a, b = roles
    rows = [f"<tr><th>head</th><th>{html.escape(first)}</th><th>{html.escape(second)}</th></tr>"]
    for layer in range(max(len(a), len(b))):
        for head in range(max(len(a[0]), len(b[0]))):
            cells = [m[layer][head].line() if layer < len(m) and head < len(m[layer]) else "" for m in (a, b)]
            rows.append(f"<tr><td>L{layer + 1} H{head + 1}</td><td>{html.escape(cells[0])}</td>"
                        f"<td>{html.escape(cells[1])}</td></tr>")
    return f'<div class="gc-compare-roles"><table>{"".join(rows)}</table></div>'


def compare_view(registry: ModelRegistry, limits: Limits, first: str, second: str | None, text: str | None):
    """(summary, the text coloured by the second model's change in loss, both logit lenses, both models' roles).

    It runs on the tab's button with the other views, so what stops a comparison (no second model, another
    tokenizer) is said here, in the view, not as a message over whichever view the visitor is reading."""
    if not second:
        return "Pick a model to compare with.", "", "", ""
    try:
        a, b, given = compared_inputs(registry, limits, first, second, text)
    except (GptcoreError, ValueError) as e:
        return f"**Cannot compare:** {without_paths(str(e))}", "", "", ""
    with user_errors():
        unit, got = token_unit(a), _numbers(a, b, given)
        legend = f"Red: {second} predicts this {unit} worse than {first}; blue: better; white: alike"
        change = loss_change_html(given.pieces, *got["surprise"], unit, legend=legend)
        lens = "".join(f"<p><b>{html.escape(name)}</b></p>"
                       + logit_lens_html(given.pieces, table, ck.tokenizer.piece, stage_names(ck.config.model.n_layer))
                       for name, ck, table in ((first, a, got["lens"][0]), (second, b, got["lens"][1])))
        notes = "\n\n".join([summary(first, second, got["surprise"], unit), *given.notices])
        return notes, change, lens, roles_table(first, second, got["roles"])


def compare_api(registry: ModelRegistry, limits: Limits, first: str, second: str, text: str) -> dict:
    """The same text through two models that share a tokenizer: each token's loss under each (nats; where
    ``second`` is lower it predicts that token better), their means, what each stage of each would predict
    (the logit lens's top token), and every head's role in each."""
    with user_errors():
        a, b, given = compared_inputs(registry, limits, first, second, text)
        got = _numbers(a, b, given)
        sa, sb = got["surprise"]

        def top(ck, lens):
            return [[ck.tokenizer.piece(int(t)) for t in stage.argmax(-1)] for stage in lens]

        return {"tokens": given.pieces, "first": first, "second": second,
                "surprise_first": sa.round(5).tolist(), "surprise_second": sb.round(5).tolist(),
                "mean_first": float(sa.mean()) if len(sa) else None,
                "mean_second": float(sb.mean()) if len(sb) else None,
                "lens_first": top(a, got["lens"][0]), "lens_second": top(b, got["lens"][1]),
                "roles_first": [[r.line() for r in layer] for layer in got["roles"][0]],
                "roles_second": [[r.line() for r in layer] for layer in got["roles"][1]], "notices": given.notices}


def _tokenizer_file(registry: ModelRegistry, name: str | None):
    try:
        return read_json_file(registry.entry(name).path / TOKENIZER) if name else None
    except GptcoreError:
        return None


def second_choice(registry: ModelRegistry, first: str | None, current: str | None = None) -> str | None:
    """The model to compare ``first`` with: ``current`` if it is another model that reads text as ``first``
    does (the same tokenizer file), else the first one listed that is."""
    wanted = _tokenizer_file(registry, first)
    listed = registry.names(attention_only=True)
    fits = (lambda n: n in listed and n != first and (wanted is None or _tokenizer_file(registry, n) == wanted))
    if current and fits(current):
        return current
    return next((n for n in listed if fits(n)), None)


def build_view(registry: ModelRegistry, limits: Limits, checkpoint: gr.Dropdown, text: gr.Textbox,
               go: gr.Button) -> dict:
    """The "Compare two models" view, inside the Inside tab's views: runs with the tab's button."""
    names = registry.names(attention_only=True)
    with gr.Tab("Compare two models", id="inside-compare"):
        second = gr.Dropdown(names, value=second_choice(registry, registry.default(attention_only=True)),
                             label="compare with", allow_custom_value=True, elem_id="compare-second")
        notes = gr.Markdown(elem_id="compare-summary")
        change = gr.HTML("", elem_id="compare-change", css_template=CSS, js_on_load=None)
        roles = gr.HTML("", elem_id="compare-roles", css_template=ROLES_CSS, js_on_load=None)
        lens = gr.HTML("", elem_id="compare-lens", css_template=CSS, js_on_load=None)
        view = per_session(compare_view, registry, limits, gpu_seconds=20)
        outputs = [notes, change, lens, roles]
        for trigger in (go.click, text.submit, second.input):
            trigger(view, [checkpoint, second, text], outputs, api_visibility="private", trigger_mode="always_last",
                    **limits.views_queue())

        def current(first: str | None, value: str | None, request: gr.Request = None):
            """The models listed now; the choice kept if it still fits the first model, else one that does."""
            seen = registry.for_session(getattr(request, "session_hash", None))
            return gr.update(choices=seen.names(attention_only=True), value=second_choice(seen, first, value))

        quick = dict(api_visibility="private", show_progress="hidden", queue=False)
        second.focus(current, [checkpoint, second], second, **quick)
        checkpoint.change(current, [checkpoint, second], second, **quick)
        gr.api(per_session(compare_api, registry, limits, gpu_seconds=20), api_name="compare", **limits.views_queue())
    return {"second": second}
