"""Assemble the tabs into one Gradio app that shares a model registry and a training manager.

Nothing here touches the network or trains at start-up: models load on first use (the default one while
the first page is drawn), so ``python app.py`` serves its first page in a few seconds.
"""

from __future__ import annotations

import threading

import gradio as gr

from .tabs import ablations, arm_models, attention, compare, inside, models, replay, sample, train
from .server.registry import ModelRegistry
from .server.results_folders import sources
from .server.settings import DOWNLOADS, AppSettings
from .server.training_job import TrainingManager
from .server.sessions import per_session

TITLE = "gptcore: a small GPT from scratch"
INTRO = (f"# {TITLE}\n"
         "Sample Shakespeare from a small GPT, look inside its attention heads and its layers, train your own model "
         "live, "
         "and read the ablation studies. Everything runs on this machine.")
CSS = """
.gradio-container { max-width: 1400px !important; }
#sample-output textarea, #train-sample textarea { font-family: ui-monospace, monospace; }
#attention-roles th, #attention-roles td:nth-child(-n+2) { white-space: nowrap; }
#ablations-summary-table table { display: block; overflow-x: auto; }
#ablations-summary-table th, #ablations-summary-table td { white-space: nowrap; }
#ablations-claims table { display: block; overflow-x: auto; }
#ablations-claims th, #ablations-claims td { min-width: 9rem; word-break: normal; overflow-wrap: normal; }
#ablations-claims th:nth-child(n+3), #ablations-claims td:nth-child(n+3) { min-width: 15rem; }
@media (max-width: 640px) {
  #train-row { flex-wrap: wrap-reverse; }  /* the run's chart above its form */
  /* on a phone the tables keep their columns (a swipe scrolls them) in a smaller, tighter type */
  #ablations-summary-table table, #ablations-claims table { font-size: 0.8em; }
  #ablations-summary-table th, #ablations-summary-table td, #ablations-claims th, #ablations-claims td {
    padding: 4px 6px !important; }
  #ablations-claims th, #ablations-claims td { min-width: 7rem; }
  #ablations-claims th:nth-child(n+3), #ablations-claims td:nth-child(n+3) { min-width: 11rem; }
}
"""


# closes the messages on screen, counting them in window.gcDismissed (which the browser test reads)
DISMISS_MESSAGES = """() => {
    const open = document.querySelectorAll("[data-testid=toast-close]");
    open.forEach(button => button.click());
    window.gcDismissed = (window.gcDismissed || 0) + open.length;
}"""


def warm_up(registry: ModelRegistry) -> threading.Thread:
    """Import torch and load the default checkpoint in the background, so the first Generate is quick."""

    def run() -> None:
        try:
            if registry.default():
                registry.get(registry.default())
        except Exception:  # noqa: BLE001 - a damaged checkpoint is reported when someone uses it
            pass

    thread = threading.Thread(target=run, daemon=True, name="warm-up")
    thread.start()
    return thread


def device_markdown(registry: ModelRegistry) -> str:
    """The header line that says where the models run (the device is chosen once, at the first call)."""
    try:
        return f"Models run on **{registry.device_label()}**."
    except Exception as e:  # noqa: BLE001 - a bad GPTCORE_DEVICE is shown, not raised on page load
        return f"Models cannot run: {e}"


def build_app(settings: AppSettings | None = None, preload: bool = True) -> gr.Blocks:
    """The whole app; ``settings`` (paths and limits) default to the environment's.

    ``preload`` starts :func:`warm_up`, which runs while the server starts and the first page is drawn.
    """
    settings = settings or AppSettings()
    registry = ModelRegistry(settings.checkpoints_dir, settings.runs_dir, settings.default_checkpoint,
                             settings.torch_threads, settings.device, results_dirs=sources(settings.ablations_dir))
    manager = TrainingManager()
    with gr.Blocks(title="gptcore", analytics_enabled=False) as demo:  # no calls home: works offline
        gr.Markdown(INTRO)
        device_note = gr.Markdown("", elem_id="device-note")
        with gr.Tabs(overflow_behavior="wrap") as tabs:  # on a phone every tab stays visible
            with gr.Tab("Sample", id="sample"):
                s = sample.build_tab(registry, settings.limits)
            with gr.Tab("Attention", id="attention") as attention_tab:
                a = attention.build_tab(registry, settings.limits)
            with gr.Tab("Inside", id="inside") as inside_tab:
                ins = inside.build_tab(registry, settings.limits, more_views=[compare.build_view])
            with gr.Tab("Train", id="train"):
                t = train.build_tab(manager, settings)
                rp = replay.build_section(registry, manager, t["timer"])
            with gr.Tab("Ablations", id="ablations"):
                ab = ablations.build_tab(settings.ablations_dir)
                am = arm_models.build_section(settings.ablations_dir, ab["study"], ab["reloaded"])
            with gr.Tab("Models", id="models"):
                mo = models.build_tab(registry, settings.limits)
        _keep_pickers_current(registry, demo, [s["checkpoint"], a["checkpoint"], ins["checkpoint"],
                                               mo["checkpoint"]], t["timer"], mo["uploaded"])
        arm_models.connect(am, registry, tabs, ins["checkpoint"], ins["views"], ins["added"][0]["second"])
        _show_on_first_open(attention_tab, "attention-btn")
        _show_on_first_open(inside_tab, "inside-btn")
        # a message belongs to the tab it came from: it does not follow the visitor to another one
        tabs.select(None, None, None, api_visibility="private", js=DISMISS_MESSAGES)
        demo.load(lambda: device_markdown(registry), None, device_note, api_visibility="private",
                  show_progress="hidden")
        demo.load(per_session(sample.checkpoint_info, registry), s["checkpoint"], s["info"],
                  api_visibility="private", show_progress="hidden")
        for fn, inputs, outputs in (a["selectors"], ins["load"], ab["load"], am["load"]):  # filled on opening
            demo.load(fn, inputs, outputs, api_visibility="private", show_progress="hidden")
        demo.load(*rp["pick"], api_visibility="private", show_progress="hidden").then(
            *rp["show"], api_visibility="private", show_progress="hidden")
    demo.queue(default_concurrency_limit=2, max_size=settings.limits.queue_size)
    if preload:
        warm_up(registry)
    return demo


def _show_on_first_open(tab: gr.Tab, button_id: str) -> None:
    """The first time a visitor opens ``tab``, it shows its views of the default text, as if they had pressed
    its button (``button_id``): a tab never opens blank, and the views are computed by the same handlers."""
    tab.select(None, None, None, api_visibility="private", js=f"""() => {{
        const key = "gcOpened_{button_id}";
        if (window[key]) return;
        window[key] = true;
        let tries = 0;  // the tab's contents are drawn only once it is opened: wait for the button
        const press = () => {{
            const button = document.querySelector("#{button_id}");
            if (button) button.click(); else if (++tries < 100) setTimeout(press, 100);
        }};
        press();
    }}""")


def _keep_pickers_current(registry: ModelRegistry, demo: gr.Blocks, pickers: list, timer: gr.Timer,
                          uploaded) -> None:
    """New checkpoints (a finished run, this session's uploads) appear in every model picker (Sample, Attention,
    Inside, Models): on the Train tab's timer, after an upload and on opening the page; nothing is sent if
    nothing changed."""
    known = gr.State(None)

    def refresh_pickers(seen, sample_value, attention_value, inside_value, models_value, request: gr.Request):
        view = registry.for_session(getattr(request, "session_hash", None))
        names, att_names = view.names(), view.names(attention_only=True)
        if (names, att_names) == seen:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), seen
        pick = lambda value, choices, default: value if value in choices else default  # noqa: E731
        return (gr.update(choices=names, value=pick(sample_value, names, view.default())),
                gr.update(choices=att_names, value=pick(attention_value, att_names,
                                                        view.default(attention_only=True))),
                gr.update(choices=att_names, value=pick(inside_value, att_names,
                                                        view.default(attention_only=True))),
                gr.update(choices=names, value=pick(models_value, names, view.default())),
                (names, att_names))

    io = dict(inputs=[known, *pickers], outputs=[*pickers, known])
    timer.tick(refresh_pickers, **io, api_visibility="private", show_progress="hidden", queue=False)
    uploaded.then(refresh_pickers, **io, api_visibility="private", show_progress="hidden")
    demo.load(refresh_pickers, **io, api_visibility="private", show_progress="hidden")


def launch_options(settings: AppSettings | None = None) -> dict:
    """Arguments for ``demo.launch`` other than host and port, which Spaces set through the environment.

    Gradio serves only files in the working directory, the temp directory or ``allowed_paths``: the folder of
    download zips is allowed wherever ``GPTCORE_APP_RUNS`` puts it (that folder, not the rest of the runs)."""
    settings = settings or AppSettings()
    return {"theme": gr.themes.Soft(), "css": CSS, "max_file_size": "60mb",
            "allowed_paths": [str(settings.runs_dir / DOWNLOADS)]}
