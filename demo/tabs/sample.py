"""Sample tab: stream text from a checkpoint, then chart the model's next-character probabilities.

The event functions are plain generators/functions of their inputs (plus the registry), so tests call them
directly; ``build_tab`` only wires them to components with stable ``api_name``s.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Iterator

import gradio as gr
import pandas as pd

from gptcore.errors import UnknownCharactersError

if TYPE_CHECKING:
    from gptcore.checkpoint import Checkpoint
    from gptcore.inference.sampling import SamplingParams

# torch-backed gptcore modules are imported inside the functions that need them: the first page is then
# served before torch has finished importing (see demo.app)

from ..views.explain import how_to_read
from ..server.registry import ModelRegistry
from ..server.settings import Limits
from ..server.inputs import NamedNumber, NamedSlider, checked_number, checked_text, user_errors
from ..server.sessions import per_session
from ..views.tokens import token_unit, visible_piece

POLICIES = [("replace them with a space", "replace"), ("drop them", "drop"), ("refuse (show an error)", "strict")]
PROB_COLUMNS = ["next character", "probability"]
EXAMPLES = [
    ["ROMEO:\n", 0.8],
    ["First Citizen:\nBefore we proceed any further, hear me speak.\n", 0.8],
    ["KING RICHARD III:\nNow is the winter of", 0.5],
]


def sampling_params(temperature: float, top_k: float | None, top_p: float, max_new_tokens: float,
                    seed: float | None, limits: Limits) -> "SamplingParams":
    """Validated SamplingParams from UI values; top_k 0 means no limit, a seed of -1 (or None) a random one."""
    from gptcore.inference.sampling import SamplingParams

    temperature = checked_number("temperature", temperature, 0, limits.max_temperature)
    max_new_tokens = checked_number("max new tokens", max_new_tokens, 1, limits.max_new_tokens, integer=True)
    top_k = None if top_k is None else checked_number("top-k (0 = no limit)", top_k, 0, limits.max_top_k, integer=True)
    top_p = checked_number("top-p", top_p, 0.01, 1.0)
    if seed is not None:
        seed = checked_number("seed (-1 = random)", seed, -1, 2**63 - 1, integer=True)
    seed = random.SystemRandom().randrange(2**31) if seed is None or seed == -1 else seed
    return SamplingParams(temperature, top_k or None, top_p, max_new_tokens, seed).validate()


def describe_checkpoint(ck: "Checkpoint") -> str:
    """One line about a model: architecture, size, and its validation loss if recorded."""
    from gptcore.models import count_parameters

    m = ck.config.model
    arch = "bigram table" if m.arch == "bigram" else (
        f"GPT, {m.n_layer} layers × {m.n_head} heads, width {m.n_embd}")
    loss = ck.metrics.get("val_loss")
    loss_text = f" · validation loss {loss:.3f}" if isinstance(loss, (int, float)) else ""
    status = ck.metrics.get("status")
    status_text = " (still training)" if status == "training" else ""
    return (f"**{ck.name}** · {arch} · context {m.block_size} {token_unit(ck)}s · "
            f"{_count(count_parameters(ck.model))} parameters · vocabulary {ck.tokenizer.vocab_size} "
            f"({ck.tokenizer.type_name})"
            f"{loss_text}{status_text}")


def _count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 100_000 else f"{n:,}"


def unknown_notice(ck: "Checkpoint", text: str, policy: str) -> str:
    """'' if every character is known; otherwise what was done about the unknown ones (or raise, if strict)."""
    unknown = ck.tokenizer.unknown_chars(text)
    if not unknown:
        return ""
    if policy == "strict":
        raise UnknownCharactersError(unknown)
    shown = ", ".join(repr(c) for c in unknown[:10]) + (" …" if len(unknown) > 10 else "")
    action = "replaced with spaces" if policy == "replace" and not ck.tokenizer.unknown_chars(" ") else "dropped"
    return f"The model does not know {shown}; {action}."


def context_note(ck: "Checkpoint", prompt: str) -> str:
    """What the model sees of a prompt longer than its context: only the last ``block_size`` tokens."""
    block = ck.config.model.block_size
    ids = ck.tokenizer.encode(prompt, "replace")
    if len(ids) <= block:
        return ""
    seen = ck.tokenizer.decode(ids[-block:])
    unit = token_unit(ck)
    return (f"The prompt is {len(ids):,} {unit}s; the model sees only its last {block} (its context), "
            f"from “{seen[:40].strip()}…”. ")


def stopped_status(status: str | None) -> str:
    """The status line once Stop has ended a generation early."""
    status = status or ""
    if "Generating…" not in status:
        return status
    before, _, after = status.partition("Generating…")
    count = after.strip() or "0 characters"
    return f"{before}Stopped after {count}."


def _check_policy(policy: str) -> str:
    if policy not in [v for _, v in POLICIES]:
        raise ValueError(f"unknown-character handling must be one of replace, drop, strict; got {policy!r:.80}")
    return policy


def on_generate(registry: ModelRegistry, limits: Limits, checkpoint: str, prompt: str | None, temperature: float,
             top_k: float | None, top_p: float, max_new_tokens: float, seed: float | None,
             unknown: str = "replace") -> Iterator[tuple[str, str]]:
    """Yield (prompt + text so far, status line), at most one update per ``limits.stream_interval_s``."""
    from gptcore.inference.sampling import stream_text

    with user_errors():
        prompt = checked_text("prompt", prompt, limits.max_prompt_chars)
        params = sampling_params(temperature, top_k, top_p, max_new_tokens, seed, limits)
        ck = registry.get(checkpoint)
        notice = unknown_notice(ck, prompt, _check_policy(unknown))
        if notice:
            gr.Warning(notice)
        shown = ck.tokenizer.clean(prompt, unknown)
        note = (notice + " ") if notice else ""
        if not shown:
            note += "Empty prompt: starting from a newline. "
        note += context_note(ck, shown)
        yield shown, note + "Generating…"
        pieces: list[str] = []  # whole characters only: a token's partial character waits in stream_text
        chars = 0
        start = last = time.perf_counter()
        for piece in stream_text(ck.model, ck.tokenizer, shown, params, policy=unknown, draft=ck.draft):
            pieces.append(piece)
            chars += len(piece)
            now = time.perf_counter()
            if now - last >= limits.stream_interval_s:
                last = now
                yield shown + "".join(pieces), note + f"Generating… {chars} characters"
        elapsed = time.perf_counter() - start
        rate = chars / elapsed if elapsed > 0 else 0.0
        yield shown + "".join(pieces), (note + f"{chars} characters in {elapsed:.2f} s ({rate:,.0f} chars/s)"
                                        f" · seed {params.seed} · {checkpoint}")


def on_next_token_chart(registry: ModelRegistry, limits: Limits, checkpoint: str, text: str | None,
                     temperature: float, top_k: float | None, top_p: float, unknown: str = "replace",
                     top: int = 10) -> pd.DataFrame:
    """The ``top`` most likely next characters after ``text`` (after temperature/top-k/top-p), as a table."""
    from gptcore.inference.sampling import next_token_distribution

    with user_errors():
        params = sampling_params(temperature, top_k, top_p, 1, 0, limits)
        ck = registry.get(checkpoint)
        text = checked_text("text", text, limits.max_prompt_chars + limits.max_new_tokens)
        dist = next_token_distribution(ck.model, ck.tokenizer, text, params, policy=_check_policy(unknown))
        rows = [(visible_piece(c), round(p, 6)) for c, p in dist[:top] if p > 0]
        return probs_frame(rows)


def probs_frame(rows: list[tuple[str, float]]) -> pd.DataFrame:
    """Typed columns, so the chart treats probability as a number even when there are no rows yet."""
    return pd.DataFrame(rows, columns=PROB_COLUMNS).astype({PROB_COLUMNS[0]: str, PROB_COLUMNS[1]: float})


def checkpoint_info(registry: ModelRegistry, checkpoint: str | None) -> str:
    """The picker's caption: what the model is, or (inline, not as a pop-up) why it cannot be used."""
    from gptcore.errors import GptcoreError

    if not checkpoint:
        return "No checkpoint yet: train one in the Train tab."
    try:
        return describe_checkpoint(registry.get(checkpoint))
    except GptcoreError as e:
        return f"**Cannot use {checkpoint}:** {e}"


def build_tab(registry: ModelRegistry, limits: Limits) -> dict:
    """Lay out the Sample tab and wire its events; returns components other tabs need (the picker)."""
    how_to_read("sample")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=280):
            checkpoint = gr.Dropdown(registry.names(), value=registry.default(), label="checkpoint",
                                     allow_custom_value=True)
            info = gr.Markdown()
            prompt = gr.Textbox(label="prompt", lines=3, placeholder="Leave empty to start from a newline",
                                max_length=limits.max_prompt_chars)
            with gr.Row():  # right under the prompt, so it is in view on a laptop screen
                go = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                stop = gr.Button("Stop", elem_id="stop-generate-btn")
            temperature = NamedSlider(0, limits.max_temperature, value=0.8, step=0.05, label="temperature",
                                      info="0 is greedy: always the most likely character")
            with gr.Row():
                top_k = NamedSlider(0, limits.max_top_k, value=0, step=1, label="top-k", info="0 = no limit")
                top_p = NamedSlider(0.01, 1.0, value=1.0, step=0.01, label="top-p")
            with gr.Row():
                max_new = NamedSlider(1, limits.max_new_tokens, value=500, step=1, label="max new tokens",
                                      elem_id="max-new-tokens")
                seed = NamedNumber(label="seed", precision=0, info="-1 = random", value=-1)
            unknown = gr.Radio(POLICIES, value="replace", label="characters the model does not know")
        with gr.Column(scale=2, min_width=280):
            output = gr.Textbox(label="text", lines=16, max_lines=30, autoscroll=True, elem_id="sample-output",
                                buttons=["copy"])
            status = gr.Markdown(elem_id="sample-status")
            probs = gr.BarPlot(probs_frame([]), x=PROB_COLUMNS[0], y=PROB_COLUMNS[1],
                               sort="-y", y_lim=[0, 1], elem_id="next-char-plot",
                               label="next character after the text (top 10, after temperature / top-k / top-p)")
    gr.Examples(EXAMPLES, inputs=[prompt, temperature], cache_examples=False, label="example prompts")

    # the wrappers keep the real parameter names, which are what API callers see
    _generate = per_session(on_generate, registry, limits, gpu_seconds=60)
    _probs = per_session(on_next_token_chart, registry, limits, gpu_seconds=10)

    # the last text and status go first, so an error never sits under a previous run's text
    cleared = go.click(lambda: ("", ""), None, [output, status], api_visibility="private", queue=False,
                       show_progress="hidden")
    gen_event = cleared.then(_generate, [checkpoint, prompt, temperature, top_k, top_p, max_new, seed, unknown],
                             [output, status], api_name="generate", concurrency_limit=limits.generate_concurrency,
                             show_progress="minimal")
    probs_inputs = [checkpoint, output, temperature, top_k, top_p, unknown]
    gen_event.success(_probs, probs_inputs, probs, api_name="next_token_probs",
                      concurrency_limit=limits.generate_concurrency, show_progress="hidden")
    stop.click(None, None, None, cancels=[gen_event]).then(
        stopped_status, status, status, api_visibility="private", queue=False, show_progress="hidden").then(
        _probs, probs_inputs, probs, api_visibility="private", concurrency_limit=limits.generate_concurrency,
        show_progress="hidden")
    checkpoint.change(per_session(checkpoint_info, registry), checkpoint, info, api_visibility="private",
                      show_progress="hidden")
    return {"checkpoint": checkpoint, "info": info}
