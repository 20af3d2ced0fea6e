"""Train tab: a small form that starts one run in a separate process, and a live view of its progress.

The form becomes a gptcore RunConfig through ``RunConfig.with_overrides`` (so gptcore's validation applies), the
run is handed to the server's single :class:`~demo.server.training_job.TrainingManager`, and a 1-second timer
redraws the loss chart, the numbers and the latest sample for every visitor.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from gptcore.bounded import read_json_file
from gptcore.config import RunConfig
from gptcore.errors import GptcoreError
from gptcore.memory import human_bytes
from gptcore.presets import PRESETS, get_preset

from ..views.explain import how_to_read
from ..server.gpu import on_zero_gpu, training_device
from ..server.settings import AppSettings, Limits
from ..server.training_job import RunStatus, TrainingManager, TrainJobSpec, duration
from ..server.inputs import NamedNumber, NamedSlider, checked_number, user_errors

SHAKESPEARE, UPLOAD, PREPARED = "Tiny Shakespeare", "my own .txt file", "prepared: "
SECONDS, ITERATIONS = "seconds", "iterations"
QUICK = "quick"
# what every in-app run changes, whatever the preset: frequent cheap evaluations and samples, one thread
APP_OVERRIDES = {"eval_interval": 50, "eval_windows": 20, "sample_interval": 150, "sample_chars": 200, "threads": 1}
SNAPSHOTS = {"snapshot_interval": 50}  # and, for a model with attention, snapshots for the replay
# the default run: small enough that one core brings the training loss under 2.5 in well under 30 s
QUICK_OVERRIDES = {"n_layer": 2, "n_head": 4, "n_embd": 64, "block_size": 64, "batch_size": 32, "lr": 3e-3,
                   "warmup_iters": 20, "dtype": "bfloat16", "dropout": 0.0}
CURVE_COLUMNS = ["step", "loss", "curve"]


def app_presets() -> dict[str, tuple[str, RunConfig]]:
    """The app's quick default, then gptcore's presets, each with the in-app overrides applied."""
    presets = {QUICK: ("a 2-layer, width-64 model that starts writing words within a minute on one core",
                       get_preset("tiny").with_overrides({**QUICK_OVERRIDES, **APP_OVERRIDES, **SNAPSHOTS}))}
    for name, (note, _) in PRESETS.items():
        preset = get_preset(name)
        presets[name] = (note, preset.with_overrides({**APP_OVERRIDES,
                                                      **(SNAPSHOTS if preset.model.arch == "gpt" else {})}))
    return presets


def build_config(limits: Limits, preset: str, n_layer, n_head, n_embd, block_size, lr, stop_mode: str,
                 stop_value) -> RunConfig:
    """A validated RunConfig from the form: the preset, the five fields, and a capped stop condition."""
    presets = app_presets()
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r:.80}; choose one of: {', '.join(presets)}")
    n_layer = checked_number("n_layer", n_layer, 1, limits.max_n_layer, integer=True)
    n_head = checked_number("n_head", n_head, 1, limits.max_n_head, integer=True)
    n_embd = checked_number("n_embd", n_embd, 1, limits.max_n_embd, integer=True)
    block_size = checked_number("block_size", block_size, 2, limits.max_block_size, integer=True)
    lr = checked_number("learning rate", lr, 1e-6, limits.max_lr)
    if stop_mode == SECONDS:
        seconds = checked_number("the time limit (seconds)", stop_value, limits.min_train_seconds,
                                 limits.max_train_seconds)
        stop = {"time_budget": seconds, "max_iters": limits.max_train_iters}
    elif stop_mode == ITERATIONS:
        iters = checked_number("the number of iterations", stop_value, limits.min_train_iters,
                               limits.max_train_iters, integer=True)
        stop = {"max_iters": iters, "time_budget": limits.max_train_seconds}
    else:
        raise ValueError(f"stop condition must be {SECONDS!r} or {ITERATIONS!r}, got {stop_mode!r:.80}")
    return presets[preset][1].with_overrides({"n_layer": n_layer, "n_head": n_head, "n_embd": n_embd,
                                              "block_size": block_size, "lr": lr, **stop})


def read_upload(path: str | None, limits: Limits, block_size: int) -> str:
    """The uploaded corpus as text: size-capped, UTF-8, and long enough for the context window."""
    from gptcore.data import read_corpus, split_point  # gptcore.data imports torch: keep it off start-up

    if not path:
        raise ValueError("choose a .txt file to upload, or train on Tiny Shakespeare")
    size = Path(path).stat().st_size
    if size > limits.max_upload_bytes:
        raise ValueError(f"the uploaded file is {human_bytes(size)}; the limit is {human_bytes(limits.max_upload_bytes)}")
    text = read_corpus(Path(path))
    needed = 10 * (block_size + 2)
    if len(text) - split_point(len(text)) <= block_size + 1 or len(text) < needed:
        raise ValueError(f"the uploaded text has {len(text)} characters; with block_size {block_size} it needs at "
                         f"least {needed} (the last 10% is held out for validation)")
    return text


def prepared_corpora(directory: Path) -> list[str]:
    """Corpus choices for the directories under ``directory`` that ``gptcore prepare`` finished."""
    try:
        children = sorted(p for p in Path(directory).iterdir() if p.is_dir())
    except OSError:
        return []
    out = []
    for child in children:
        try:
            if read_json_file(child / "manifest.json").get("complete"):
                out.append(PREPARED + child.name)
        except (GptcoreError, AttributeError):
            continue
    return out


def start_run(manager: TrainingManager, settings: AppSettings, preset: str, n_layer, n_head, n_embd, block_size,
              lr, stop_mode: str, stop_value, corpus: str, upload: str | None, visitor: str | None = None) -> RunStatus:
    """Validate the form and start the run, which only ``visitor`` may stop (or raise a clear error, e.g. a
    run already in progress)."""
    from gptcore.data import resolve_corpus
    from gptcore.memory import check_fits

    config = build_config(settings.limits, preset, n_layer, n_head, n_embd, block_size, lr, stop_mode, stop_value)
    # the server's device (the CPU on ZeroGPU, which lends its GPU to requests only), whatever the preset says
    config = config.with_overrides({"device": training_device(settings.device)})
    check_fits(config, config.train.device)  # the same memory check as the CLI's, before a process starts
    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{preset}"
    label = (f"{preset}: {config.model.n_layer} layers × {config.model.n_head} heads, width {config.model.n_embd},"
             f" block {config.model.block_size}, lr {config.train.lr:g}")
    if corpus == SHAKESPEARE:
        spec = TrainJobSpec(config, settings.runs_dir / name, corpus_path=str(resolve_corpus(None)), label=label)
    elif corpus == UPLOAD:
        text = read_upload(upload, settings.limits, config.model.block_size)
        spec = TrainJobSpec(config, settings.runs_dir / name, corpus_text=text,
                            corpus_label=f"upload: {Path(upload).name}", label=label)
    elif corpus in prepared_corpora(settings.corpora_dir):  # a listed name only: never a path from the form
        spec = TrainJobSpec(config, settings.runs_dir / name,
                            corpus_path=str(settings.corpora_dir / corpus.removeprefix(PREPARED)), label=label)
    else:
        choices = [SHAKESPEARE, UPLOAD, *prepared_corpora(settings.corpora_dir)]
        raise ValueError(f"corpus must be one of {', '.join(map(repr, choices))}; got {corpus!r:.80}")
    return manager.start(spec, owner=visitor)


def _loss(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def visitor_of(request: gr.Request | None) -> str:
    """Who is asking: the caller's session (each browser tab and each API client has its own); a caller
    without one gets a name of its own, so no one else can stop its run."""
    session = getattr(request, "session_hash", None)
    return session if session else f"anonymous-{secrets.token_hex(8)}"


def status_markdown(st: RunStatus, mine: bool = True) -> str:
    """The numbers a learner watches: state, step, time, speed and losses; to a visitor who did not start
    the active run (``mine`` False), whose it is and when the trainer is free."""
    if st.state == "idle":
        return "No run yet. Pick a preset (the quick one is a good start) and press **Start**."
    head = st.state.capitalize()
    steps = f"step {st.step}" + (f" of {st.max_iters}" if st.max_iters < 100_000 else "")
    lines = [f"**{head}** · {st.label} · corpus: {st.corpus}",
             f"{steps} · elapsed {duration(st.elapsed)} · time left ≈ {duration(st.eta) if st.active else '0:00'}"
             f" · {st.tokens_per_sec or 0:,.0f} tokens/s",
             f"train loss {_loss(st.train_loss)} · validation loss {_loss(st.val_loss)} "
             f"(best {_loss(st.best_val_loss)})"]
    if st.message:
        lines.append(st.message)
    if st.active and not mine:
        lines.append(f"Another visitor started this run: you can watch it, and only they can stop it. The "
                     f"trainer is free again in about {duration(st.eta, '10 minutes')}.")
    return "\n\n".join(lines)


def curve_frame(st: RunStatus) -> pd.DataFrame:
    """Both curves in long form. Each curve always has at least one row (a blank loss if it has no points yet)
    because the chart fixes its colour legend from the first data it draws; typed columns stop an empty
    frame from making step and loss categories."""
    rows = []
    for name, curve in (("train", st.train_curve), ("validation", st.val_curve)):
        rows += [(s, v, name) for s, v in curve] or [(0, float("nan"), name)]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS).astype({"step": int, "loss": float, "curve": str})


def sample_text(st: RunStatus) -> str:
    return f"[step {st.sample_step}]\n{st.sample}" if st.sample else ""


def build_tab(manager: TrainingManager, settings: AppSettings) -> dict:
    presets = app_presets()
    how_to_read("train")
    with gr.Row(equal_height=False, elem_id="train-row"):  # on a phone the live view comes first (demo/app.py's CSS)
        with gr.Column(scale=1, min_width=280):
            form = _form(settings, presets)
        with gr.Column(scale=2, min_width=280):
            view = _live_view(manager)
    timer = gr.Timer(1.0)
    _wire(manager, settings, presets, form, view, timer)
    return {"timer": timer}


def _form(settings: AppSettings, presets: dict[str, tuple[str, RunConfig]]) -> dict:
    """The run's settings, each slider bounded by the server's limits, and the Start and Stop buttons."""
    limits, q = settings.limits, presets[QUICK][1]
    if on_zero_gpu():
        gr.Markdown("On this Space's ZeroGPU hardware a GPU is lent to each request for seconds, not to a "
                    "training run: live training runs on the **CPU** (sampling and attention use the GPU).",
                    elem_id="zero-gpu-note")
    f = {"preset": gr.Dropdown(list(presets), value=QUICK, label="preset"),
         "preset_note": gr.Markdown(presets[QUICK][0], elem_id="preset-note")}
    with gr.Row():
        f["n_layer"] = NamedSlider(1, limits.max_n_layer, value=q.model.n_layer, step=1, label="n_layer")
        f["n_head"] = NamedSlider(1, limits.max_n_head, value=q.model.n_head, step=1, label="n_head")
    with gr.Row():
        f["n_embd"] = NamedSlider(8, limits.max_n_embd, value=q.model.n_embd, step=8, label="n_embd")
        f["block_size"] = NamedSlider(8, limits.max_block_size, value=q.model.block_size, step=8, label="block_size")
    f["lr"] = NamedNumber(q.train.lr, label="learning rate", info=f"up to {limits.max_lr:g}")
    with gr.Row():
        f["stop_mode"] = gr.Radio([SECONDS, ITERATIONS], value=SECONDS, label="stop after")
        f["stop_value"] = NamedNumber(60, label="how many", info=f"at most {int(limits.max_train_seconds)} s "
                                      f"or {limits.max_train_iters:,} iterations; runs end after "
                                      f"{int(limits.max_train_seconds // 60)} minutes regardless")
    f["corpus"] = gr.Radio([SHAKESPEARE, UPLOAD, *prepared_corpora(settings.corpora_dir)], value=SHAKESPEARE,
                           label="corpus", info="prepared: corpora made by gptcore prepare (any size; "
                           "their own tokenizer)")
    f["upload"] = gr.File(label=f"UTF-8 .txt file (up to {human_bytes(limits.max_upload_bytes)})",
                          file_types=[".txt"], type="filepath", visible=False)
    with gr.Row():
        f["start"] = gr.Button("Start", variant="primary", elem_id="train-start-btn")
        f["stop"] = gr.Button("Stop", variant="stop", elem_id="train-stop-btn")
    return f


def _live_view(manager: TrainingManager) -> dict:
    """The run's status line, its loss curves and the latest sample."""
    return {
        "status": gr.Markdown(status_markdown(manager.status()), elem_id="train-status"),
        "chart": gr.LinePlot(curve_frame(manager.status()), x="step", y="loss", color="curve",
                             color_map={"train": "#1f77b4", "validation": "#d62728"}, x_axis_format="d",
                             label="loss (train: mean of recent steps; validation: every 50 steps)",
                             elem_id="train-chart", x_title="step", y_title="loss (cross-entropy)"),
        "sample": gr.Textbox(label="sample from the current weights", lines=8, max_lines=12,
                             elem_id="train-sample", interactive=False),
    }


def _wire(manager: TrainingManager, settings: AppSettings, presets: dict, f: dict, view: dict, timer: gr.Timer) -> None:
    """The form's events, Start and Stop (one run per server), the timer that refreshes the view only when the
    run has changed, and the status endpoint for API callers."""
    seen = gr.State(-1)

    def _fill(name: str):
        note, cfg = presets.get(name, presets[QUICK])
        m = cfg.model
        return note, m.n_layer, m.n_head, m.n_embd, m.block_size, cfg.train.lr

    def train_start(preset: str, n_layer: float, n_head: float, n_embd: float, block_size: float, lr: float,
                    stop_mode: str, stop_value: float, corpus: str, upload: str | None,
                    request: gr.Request = None) -> str:
        """Start a run (one per server) that only this visitor can stop; the status line or a clear error."""
        with user_errors():
            return status_markdown(start_run(manager, settings, preset, n_layer, n_head, n_embd, block_size, lr,
                                             stop_mode, stop_value, corpus, upload, visitor_of(request)))

    def train_stop(request: gr.Request = None) -> str:
        """Stop the run this visitor started (a clear error for anyone else's)."""
        with user_errors():
            return status_markdown(manager.stop(visitor_of(request)))

    def _tick(version: int, request: gr.Request = None):
        st = manager.status()
        if st.version == version:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), version
        mine = manager.owned_by(visitor_of(request))
        return (status_markdown(st, mine), curve_frame(st), sample_text(st),
                gr.update(interactive=mine or not st.active), st.version)

    def train_status() -> dict:
        """The current (or last) run: state, step, elapsed, eta, tokens/s, losses, latest sample, curves."""
        return manager.status().to_dict()

    sizes = [f[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "lr")]
    f["preset"].input(_fill, f["preset"], [f["preset_note"], *sizes], api_visibility="private")
    f["corpus"].change(lambda c: gr.update(visible=c == UPLOAD), f["corpus"], f["upload"], api_visibility="private")
    f["start"].click(train_start, [f["preset"], *sizes, f["stop_mode"], f["stop_value"], f["corpus"], f["upload"]],
                     view["status"], api_name="train_start", concurrency_limit=1, concurrency_id="train-control")
    # Stop and the status are quick and never wait behind a crowd in the queue (a full queue would refuse
    # them); the manager's lock keeps Stop and Start apart
    f["stop"].click(train_stop, None, view["status"], api_name="train_stop", queue=False)
    timer.tick(_tick, seen, [view["status"], view["chart"], view["sample"], f["stop"], seen],
               api_visibility="private", show_progress="hidden", concurrency_limit=None, queue=False)
    gr.api(train_status, api_name="train_status", queue=False)
