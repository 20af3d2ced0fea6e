"""The Ablations tab's "open an arm's model": the model kept for each arm of the study shown, opened in the Inside
tab, alone or beside another arm's in its comparison view, so that what the extra capacity does can be looked at.

Which model belongs to which arm, and its losses, are gptcore's (``gptcore.experiments.arm_models``); this module
lists them and moves the visitor to the Inside tab with the models picked.
"""

from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr

from ..server.inputs import user_errors, without_paths
from ..server.registry import ModelRegistry, arm_model_name
from ..server.results_folders import checked_study

# what the Inside tab does once its pickers hold the arms' models: press its button, and mark the tab as
# opened so that its own first-open press does not run the views a second time
PRESS_INSIDE = """() => {
    window["gcOpened_inside-btn"] = true;
    let tries = 0;
    const press = () => {
        const button = document.querySelector("#inside-btn");
        if (button && button.offsetParent !== null) button.click(); else if (++tries < 100) setTimeout(press, 100);
    };
    press();
}"""


def study_arms(directory: Path, study: str | None) -> tuple[dict, list]:
    """(the study's validated results, its arms with their kept models) for a picker value; ValueError if the
    study is not one the tab lists."""
    from gptcore.experiments.ablate import BASE_SEED, load_results
    from gptcore.experiments.arm_models import arm_models

    source, name = checked_study(directory, study)
    results = load_results(source / f"{name}.json")
    return results, arm_models(source, results, BASE_SEED)


def models_markdown(results: dict, arms: list) -> str:
    """One row per arm: the model to open, its seed and whole-split losses, or why it has none."""
    if not arms:
        return ""
    steps = results["budget"]["max_iters"]
    rows = [f"**The arms' models.** One seed of each arm, trained by the study ({steps:,} steps), kept with its "
            f"weights in float16. Loss: mean cross-entropy over the whole validation split, of the kept weights "
            f"(the study's record of the same run in brackets).", "",
            "| arm | model | seed | whole-split loss |", "|---|---|---|---|"]
    for arm in arms:
        if arm.path is None:
            rows.append(f"| {arm.label} | — | {arm.seed} | {arm.missing} |")
        else:
            recorded = "" if arm.recorded_val_loss is None else f" ({arm.recorded_val_loss:.4f})"
            loss = "?" if arm.val_loss is None else f"{arm.val_loss:.4f}"
            rows.append(f"| {arm.label} | `{arm_model_name(arm.path)}` | {arm.seed} | {loss}{recorded} |")
    return "\n".join(rows + _sampled_only(arms))


def _with_attention(arm) -> bool:
    """Whether the Inside tab can open the arm's model: it has one, and it has attention (a bigram has none)."""
    return arm.path is not None and arm.arch == "gpt"


def _sampled_only(arms: list) -> list[str]:
    """A line naming the kept models without attention, and where they can be used instead."""
    names = [f"`{arm_model_name(arm.path)}`" for arm in arms if arm.path is not None and not _with_attention(arm)]
    if not names:
        return []
    one = len(names) == 1
    return ["", f"No attention to look inside in {', '.join(names)}: sample from {'it' if one else 'them'} in the "
                f"Sample tab, which lists {'it under this name' if one else 'them under these names'}."]


def arm_choices(directory: Path, study: str | None):
    """(markdown, first arm picker, second arm picker): the study's arms whose model the Inside tab can open, the
    first and the last of them picked (1 head against 8 heads, 2 layers against 8), so that one press compares the
    extremes; the second picker is empty where there is only one."""
    with user_errors():
        if not study:
            return "", gr.update(choices=[], value=None), gr.update(choices=[], value=None)
        results, arms = study_arms(directory, study)
        choices = [(f"{arm.label} (seed {arm.seed})", arm_model_name(arm.path)) for arm in arms if _with_attention(arm)]
        others = choices if len(choices) > 1 else []
        return (without_paths(models_markdown(results, arms)),
                gr.update(choices=choices, value=choices[0][1] if choices else None),
                gr.update(choices=others, value=others[-1][1] if others else None))


def arm_models_api(directory: Path, study: str) -> dict:
    """The study's arms: each one's kept model (its name in the model pickers), seed and losses, or why none."""
    with user_errors():
        results, arms = study_arms(directory, study)
        return {"study": results["study"], "steps": results["budget"]["max_iters"],
                "arms": [{"arm": a.arm, "label": a.label, "seed": a.seed,
                          "model": arm_model_name(a.path) if a.path else None, "arch": a.arch, "val_loss": a.val_loss,
                          "recorded_val_loss": a.recorded_val_loss, "missing": a.missing or None} for a in arms]}


def _checked(registry: ModelRegistry, name: str | None, missing: str) -> str:
    """``name``, a model the Inside tab can open; ValueError ``missing`` without one, or naming what is wrong."""
    if not name:
        raise ValueError(missing)
    # a name the pickers do not list is refused, in a sentence naming the choices
    if not registry.entry(name).has_attention():
        raise ValueError(f"{name:.80} has no attention to look inside; sample from it in the Sample tab")
    return name


NO_ARM = "pick the arm first: this study has no kept model with attention"
NO_OTHER = "pick the arm to compare with first: a comparison needs two kept models with attention"


def open_one(registry: ModelRegistry, name: str | None):
    """(the Inside tab selected, its model picker set to the arm's model, its first view selected)."""
    with user_errors():
        return (gr.Tabs(selected="inside"), gr.update(value=_checked(registry, name, NO_ARM)),
                gr.Tabs(selected="inside-predictions"))


def open_two(registry: ModelRegistry, name: str | None, other: str | None):
    """(the Inside tab selected, its model picker on the first arm's model, its comparison picker on the
    second's, its comparison view selected)."""
    with user_errors():
        first, second = _checked(registry, name, NO_ARM), _checked(registry, other, NO_OTHER)
        return (gr.Tabs(selected="inside"), gr.update(value=first), gr.update(value=second),
                gr.Tabs(selected="inside-compare"))


def build_section(directory: Path, study: gr.Dropdown, reloaded) -> dict:
    """The pickers and buttons, under the Ablations tab's charts, following its ``study`` picker (and its
    reload, the event ``reloaded``); :func:`connect` wires them to the Inside tab."""
    notes = gr.Markdown(elem_id="ablations-models")
    with gr.Row(equal_height=False):
        first = gr.Dropdown([], label="arm", elem_id="ablations-arm", min_width=200)
        second = gr.Dropdown([], label="compare with", elem_id="ablations-arm-other", min_width=200)
    with gr.Row():
        open_one_btn = gr.Button("Open in Inside", elem_id="ablations-open-btn", min_width=160)
        open_two_btn = gr.Button("Compare the two in Inside", variant="primary", elem_id="ablations-compare-btn",
                                 min_width=160)
    show = functools.partial(arm_choices, directory)
    outputs = [notes, first, second]
    study.input(show, study, outputs, api_visibility="private", concurrency_limit=2, trigger_mode="always_last")
    reloaded.then(show, study, outputs, api_visibility="private", concurrency_limit=2)

    def ablation_models(study: str) -> dict:
        """Each arm of ``study`` with its kept model's name, seed and whole-split loss, or why it has none."""
        return arm_models_api(directory, study)

    gr.api(ablation_models, api_name="ablation_models", concurrency_limit=2)
    return {"first": first, "second": second, "open": open_one_btn, "compare": open_two_btn,
            "load": (show, study, outputs)}


def connect(section: dict, registry: ModelRegistry, tabs: gr.Tabs, checkpoint: gr.Dropdown, views: gr.Tabs,
            compared: gr.Dropdown) -> None:
    """Open the picked arm in the Inside tab (``checkpoint``), or both, the second in its comparison view
    (``compared``, shown in ``views``), and run the tab's views on them."""
    quick = dict(api_visibility="private", show_progress="hidden")
    one, two = functools.partial(open_one, registry), functools.partial(open_two, registry)
    section["open"].click(one, section["first"], [tabs, checkpoint, views], **quick).success(
        None, None, None, js=PRESS_INSIDE, **quick)
    section["compare"].click(two, [section["first"], section["second"]], [tabs, checkpoint, compared, views],
                             **quick).success(None, None, None, js=PRESS_INSIDE, **quick)
