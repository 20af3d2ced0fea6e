"""The Train tab's replay: a step slider over a run's snapshots (:mod:`gptcore.snapshots`), showing any
head's attention on the probe text, the probe coloured by surprise, and every head's role as it changes.

The runs offered are the models with snapshots (the shipped one first, then runs trained here) and the run in
progress. A visitor picks one by its name; a name never becomes a path. Built by ``demo/app.py`` inside the
Train tab, so that the tab's modules stay apart.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from gptcore.errors import GptcoreError
from gptcore.head_roles import unit_name
from gptcore.snapshots import SNAPSHOTS_FILE, Snapshots

from ..server.inputs import checked_number, user_errors
from ..server.registry import ModelRegistry
from ..server.training_job import TrainingManager
from ..views.html import CSS, interactive_script
from ..views.replay import REPLAY_CSS, head_html, load_snapshots, replay_numbers, roles_html, step_label, surprise_html

LIVE = "the run in progress"
NO_RUNS = "No run with snapshots yet: start one above, and its snapshots appear here as it trains."


def replay_sources(registry: ModelRegistry, manager: TrainingManager) -> dict[str, Path]:
    """The runs that can be replayed, by the name a visitor picks: the run in progress (while it has
    snapshots), then every listed model with a snapshots file."""
    sources: dict[str, Path] = {}
    st = manager.status()
    if st.active and st.out_dir and (Path(st.out_dir) / SNAPSHOTS_FILE).is_file():
        sources[LIVE] = Path(st.out_dir)
    for entry in registry.entries():
        if (entry.path / SNAPSHOTS_FILE).is_file():
            sources[entry.name] = entry.path
    return sources


def _opened(registry: ModelRegistry, manager: TrainingManager, run: str) -> tuple[Snapshots, str]:
    sources = replay_sources(registry, manager)
    if run not in sources:
        shown = ", ".join(sources) or "none yet (train a run in this tab)"
        raise ValueError(f"no snapshots of {run!r:.80}; runs with snapshots: {shown}")
    snaps = load_snapshots(sources[run])
    if not snaps.taken:
        raise ValueError(f"{run} has no snapshots yet")
    return snaps, unit_name(snaps.pieces)


def _chosen(snaps: Snapshots, index, layer, head) -> tuple[int, int, int]:
    """The 0-based snapshot, layer and head from the slider and the two pickers (1-based)."""
    n_layer, n_head = snaps.taken[0].attention.shape[:2]
    return (checked_number("snapshot", index, 0, len(snaps.taken) - 1, integer=True),
            checked_number("layer", layer, 1, n_layer, integer=True) - 1,
            checked_number("head", head, 1, n_head, integer=True) - 1)


def _decode(snaps: Snapshots):
    """Token id -> text: the pieces a run's snapshots hold are all the model's tokens that appear in its
    windows; a predicted token outside them is shown by its id."""
    known = {i: p for w, ps in zip(snaps.windows, snaps.window_pieces) for i, p in zip(w, ps)}
    return lambda t: known.get(t, f"<{t}>")


def show(registry: ModelRegistry, manager: TrainingManager, run: str, index, layer, head):
    """(the step line, the chosen head's attention, the surprise-coloured probe, the roles table)."""
    if not run:
        return NO_RUNS, "", "", ""
    with user_errors():
        snaps, unit = _opened(registry, manager, run)
        i, lay, hd = _chosen(snaps, index, layer, head)
        return (step_label(snaps, i), head_html(snaps, i, lay, hd, unit),
                surprise_html(snaps, snaps.taken[i], _decode(snaps), unit), roles_html(snaps, i, (lay, hd)))


def pick_run(registry: ModelRegistry, manager: TrainingManager, run: str):
    """On choosing a run: the slider over its snapshots (at the last), and its layers and heads."""
    if not run:
        return gr.skip(), gr.skip(), gr.skip()
    with user_errors():
        snaps, _ = _opened(registry, manager, run)
        n_layer, n_head = snaps.taken[0].attention.shape[:2]
        last = len(snaps.taken) - 1
        return (gr.update(maximum=max(last, 1), value=last, interactive=last > 0),
                gr.update(choices=[(f"layer {k + 1}", k + 1) for k in range(n_layer)], value=1),
                gr.update(choices=[(f"head {k + 1}", k + 1) for k in range(n_head)], value=1))


def follow_live(registry: ModelRegistry, manager: TrainingManager, run: str | None, index, known: int):
    """On the Train tab's timer: while the run in progress is shown, the slider grows with its snapshots (and
    stays on the newest if it was on the last one). (slider update or skip, the number of snapshots known)."""
    if run != LIVE:
        return gr.skip(), known
    try:
        snaps, _ = _opened(registry, manager, run)
    except (GptcoreError, ValueError):  # the run ended (it is listed by its own name now) or has none yet
        return gr.skip(), known
    n = len(snaps.taken)
    if n == known:
        return gr.skip(), known
    on_last = not isinstance(index, (int, float)) or index >= known - 1
    return gr.update(maximum=max(n - 1, 1), value=n - 1 if on_last else index, interactive=n > 1), n


def replay_api(registry: ModelRegistry, manager: TrainingManager, run: str, step: int, layer: int = 1,
               head: int = 1) -> dict:
    """A run's snapshot at training step ``step`` (the last taken at or before it): the probe text, the
    loss, surprise and prediction at every position, every head's role (on the probe, and over the windows of
    validation text), and the attention of ``layer``/``head`` (1-based; row i is what token i looks at)."""
    with user_errors():
        snaps, _ = _opened(registry, manager, run)
        step = checked_number("step", step, 0, 10**12, integer=True)
        shot = snaps.at(step)
        _, lay, hd = _chosen(snaps, 0, layer, head)
        return {"run": run, **replay_numbers(snaps, snaps.taken.index(shot), lay, hd, _decode(snaps))}


def build_section(registry: ModelRegistry, manager: TrainingManager, timer: gr.Timer) -> dict:
    """The replay under the Train tab's live view; ``timer`` is the tab's, which keeps a live run's slider current."""
    sources = list(replay_sources(registry, manager))
    gr.Markdown("### Replay: how the heads formed\nEvery few steps a run records what its model does on a probe "
                "text from the validation split. Slide through the steps: at first every head spreads its "
                "attention evenly; then heads take on jobs (the previous character, the start of the word, the "
                "last newline...). Bold roles changed since the previous snapshot.", elem_id="replay-intro")
    with gr.Row():
        run = gr.Dropdown(sources, value=sources[0] if sources else None, label="run", elem_id="replay-run")
        layer = gr.Dropdown([("layer 1", 1)], value=1, label="layer", elem_id="replay-layer")
        head = gr.Dropdown([("head 1", 1)], value=1, label="head", elem_id="replay-head-pick")
    step = gr.Slider(0, 1, value=0, step=1, label="snapshot (slide through training)", elem_id="replay-step")
    label = gr.Markdown(elem_id="replay-step-label")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=280):
            head_view = gr.HTML("", elem_id="replay-head", js_on_load=interactive_script(), css_template=CSS,
                                min_height=120)
        with gr.Column(scale=2, min_width=280):
            text_view = gr.HTML("", elem_id="replay-text", css_template=CSS, js_on_load=None)  # tooltips only
    roles = gr.HTML("", elem_id="replay-roles", css_template=REPLAY_CSS, js_on_load=None)
    outputs = [label, head_view, text_view, roles]

    def _show(r, i, lay, hd):
        return show(registry, manager, r, i, lay, hd)

    def _pick(r):
        return pick_run(registry, manager, r)

    def _runs(current):
        names = list(replay_sources(registry, manager))
        return gr.update(choices=names, value=current if current in names else (names[0] if names else None))

    quick = dict(api_visibility="private", show_progress="hidden", queue=False)
    known = gr.State(0)
    timer.tick(lambda r, i, k: follow_live(registry, manager, r, i, k), [run, step, known], [step, known], **quick)
    run.focus(_runs, run, run, **quick)
    run.input(_pick, run, [step, layer, head], **quick).then(_show, [run, step, layer, head], outputs, **quick)
    for control in (step, layer, head):
        control.change(_show, [run, step, layer, head], outputs, trigger_mode="always_last", **quick)

    def replay(run: str, step: int, layer: int = 1, head: int = 1) -> dict:
        return replay_api(registry, manager, run, step, layer, head)

    replay.__doc__ = replay_api.__doc__
    gr.api(replay, api_name="replay", queue=False)
    return {"pick": (_pick, [run], [step, layer, head]), "show": (_show, [run, step, layer, head], outputs),
            "run": run, "step": step}
