"""Ablations tab: charts and tables from the ablation studies' results files (checkpoints/ablations/*.json).

Reading and validating a file is gptcore's job (``gptcore.experiments.ablation_results.load_results``, which names the
bad key of a damaged file); this module only draws. Until the studies have been run, the tab says so.
"""

from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr
import pandas as pd

from ..views.explain import how_to_read
from ..views.plots import ablation_summary_figure, loss_curves_figure
from ..server.inputs import user_errors, without_paths
from ..server.results_folders import checked_study, list_studies, locate, sources
from ..server.settings import REPO_ROOT


def _reader():
    """gptcore's results reader and Markdown summary (imported on first use: it pulls in torch)."""
    from gptcore.experiments.ablation_results import load_results, summarize

    return load_results, summarize

RUN_COLUMNS = ["arm", "seed", "final val loss", "params", "tokens seen", "wall time (s)", "diverged", "ran on"]


def study_choices(directory: Path) -> list[tuple[str, str]]:
    """(label, value) for the picker: each study with its budget in steps, read from its results file."""
    from gptcore.bounded import read_json_file
    from gptcore.errors import GptcoreError

    choices = []
    for value in list_studies(directory):
        source, name = locate(directory, value)
        try:
            steps = read_json_file(source / f"{name}.json")["budget"]["max_iters"]
            choices.append((f"{name}, {steps:,} steps a run", value))
        except (GptcoreError, KeyError, TypeError, ValueError):
            choices.append((value, value))
    return choices


def missing_message() -> str:
    return ("**No ablation results yet.** This tab reads the `<study>.json` files that "
            "`python -m gptcore ablate --study all` writes (about an hour on two cores) into the app's ablations "
            "folder (`GPTCORE_ABLATIONS`). Once a study has run, press **Reload**.")


def _x_label(arms: list[dict]) -> str:
    keys = {tuple(sorted(arm.get("overrides", {}))) for arm in arms}
    return keys.pop()[0] if len(keys) == 1 and len(next(iter(keys), ())) == 1 else "arm"


def is_ordered(arms: list[dict]) -> bool:
    """Arms whose values are numbers on a scale (heads, layers), not categories (norm, positions, on/off)."""
    return all(isinstance(a["value"], (int, float)) and not isinstance(a["value"], bool) for a in arms)


def _ran_on(run: dict, results: dict) -> str:
    """Where a run trained: its device and torch (older records have only the file's torch)."""
    return f"{run.get('device', '?')}, torch {run.get('torch') or results.get('torch', '?')}"


def study_figures(results: dict):
    """(summary figure, loss-curves figure, per-run table) for one validated results dict."""
    arms = results["arms"]
    labels = [arm["label"] for arm in arms]
    finals = [[r["val_loss"] for r in arm["runs"] if r["val_loss"] is not None] for arm in arms]
    xlabel = _x_label(arms)
    summary = ablation_summary_figure(labels, finals, [arm["writeup_val_loss"] for arm in arms], xlabel,
                                      f"{results['study']}: final validation loss against {xlabel}",
                                      ordered=is_ordered(arms),
                                      unigram=(results.get("references") or {}).get("unigram_val_loss"))
    series = [(arm["label"], [[(p["step"], p["val_loss"]) for p in r["curve"] if p["val_loss"] is not None]
                              for r in arm["runs"]]) for arm in arms]
    curves = loss_curves_figure(series, f"{results['study']}: validation loss during training, per arm")
    rows = [(arm["label"], r["seed"], None if r["val_loss"] is None else round(r["val_loss"], 4), r["params"],
             r["tokens_seen"], round(r["wall_time_s"], 1), "yes" if r.get("diverged") else "no",
             _ran_on(r, results)) for arm in arms for r in arm["runs"]]
    return summary, curves, pd.DataFrame(rows, columns=RUN_COLUMNS)


MAX_NOTES_BYTES = 20_000


CLAIMS_FILE = "claims.md"  # beside the default budget's results: every claim's verdict, as docs/ablations.md shows it


def _read_notes(path: Path) -> str | None:
    """A Markdown file a person wrote beside the results (at most MAX_NOTES_BYTES), or None when it is absent."""
    try:
        return path.read_bytes()[:MAX_NOTES_BYTES].decode("utf-8", errors="replace").strip()
    except OSError:
        return None


def claims_markdown(directory: Path) -> str:
    """Every claim of the original write-up with its budget, what the studies found and the verdict, in one table
    (``<directory>/claims.md``, the table docs/ablations.md shows), so the tab opens on the answers, not on one study."""
    return _read_notes(Path(directory) / CLAIMS_FILE) or "*No claim-by-claim summary has been written yet.*"


def study_notes(directory: Path, results: dict) -> str:
    """The study's budget, then its caveats and conclusion as a person wrote them after reading the results
    (``<study>.md`` beside ``<study>.json``), so the chart is never read without them."""
    b = results["budget"]
    budget = (f"**Budget:** {b.get('max_iters')} steps of {b.get('batch_size')}×{b.get('block_size')} tokens "
              f"({b.get('tokens_per_run', 0):,} tokens a run), the same for every arm; final loss on the whole "
              f"validation split. Verdicts: Welch's t-test over seeds, p < 0.05.")
    seeds = [len(arm["runs"]) for arm in results["arms"]]
    if min(seeds) < 3:  # the runner's minimum: a study below it is still being run
        count = f"{min(seeds)}" if min(seeds) == max(seeds) else f"{min(seeds)} to {max(seeds)}"
        budget += (f"\n\n**Still running:** {sum(n > 0 for n in seeds)} of {len(seeds)} arms have results, with "
                   f"{count} seed{'s' if max(seeds) != 1 else ''} each; every arm gets at least 3 before a verdict.")
    written = (_read_notes(Path(directory) / f"{results['study']}.md")
               or "*No conclusion has been written for these results yet.*")
    return budget + "\n\n" + written


def budgets_markdown(directory: Path, source: Path, name: str, results: dict) -> str:
    """Where the study (``results``, read from ``source``) was also run at other budgets (the other directories
    of ``directory``'s family): each comparison's verdict at each budget, and whether it stays the same;
    empty when this is the study's only budget."""
    from gptcore.experiments.ablation_results import load_results, verdicts_across_budgets

    others = [other / f"{name}.json" for other in sources(directory) if other != source]
    others = [load_results(path) for path in others if path.is_file()]
    if not others:
        return ""
    return ("\n\n**The same comparisons at each budget the study ran** (does a longer run change a verdict?):\n\n"
            + verdicts_across_budgets([results, *others]))


def ablations(directory: Path, study: str | None):
    """(intro markdown, summary figure, notes markdown, summary table markdown, curves figure, runs table)."""
    with user_errors():
        studies = list_studies(directory)
        if not studies:
            return missing_message(), None, "", "", None, pd.DataFrame(columns=RUN_COLUMNS)
        source, name = checked_study(directory, study or studies[0])
        load_results, summarize = _reader()
        from gptcore.experiments.wallclock import equal_time_markdown
        results = load_results(source / f"{name}.json")
        summary, curves, runs = study_figures(results)
        intro = (f"**{results['study']}** — {results['description']}. The original write-up claimed: "
                 f"*{results['claim']}*")
        table = (summarize(results, heading=False) + "\n\n" + equal_time_markdown(source, results, _shown(source))
                 + budgets_markdown(directory, source, name, results))
        return intro, summary, without_paths(study_notes(source, results)), without_paths(table), curves, runs


def _shown(directory: Path) -> str:
    """The folder as a visitor may see it: relative to the repository (checkpoints/ablations), or its name."""
    try:
        return str(directory.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return directory.name


def build_tab(directory: Path) -> dict:
    studies = study_choices(directory)
    how_to_read("ablations")
    with gr.Accordion("What the studies found, claim by claim", open=False):
        claims = gr.Markdown(claims_markdown(directory), elem_id="ablations-claims")
    with gr.Row():
        study = gr.Dropdown(studies, value=studies[0][1] if studies else None, label="study", scale=3,
                            allow_custom_value=True)
        reload = gr.Button("Reload", scale=1, elem_id="ablations-reload-btn")
    intro = gr.Markdown(elem_id="ablations-intro")
    with gr.Row(equal_height=False):  # the chart and what to make of it side by side; stacked on a phone
        summary_plot = gr.Plot(label="final validation loss per arm", show_label=False, format="png",
                               elem_id="ablations-summary", min_width=320, scale=3)
        notes = gr.Markdown(elem_id="ablations-notes", container=True, min_width=280, scale=2)
    summary_table = gr.Markdown(elem_id="ablations-summary-table")
    curves_plot = gr.Plot(label="validation loss curves", show_label=False, format="png",
                          elem_id="ablations-curves")
    runs_table = gr.Dataframe(pd.DataFrame(columns=RUN_COLUMNS), label="every run", interactive=False,
                              elem_id="ablations-runs")
    outputs = [intro, summary_plot, notes, summary_table, curves_plot, runs_table]

    _show = functools.partial(ablations, directory)

    def _reload(name):
        choices = study_choices(directory)
        names = [value for _, value in choices]
        name = name if name in names else (names[0] if names else None)
        return gr.update(choices=choices, value=name), claims_markdown(directory), *ablations(directory, name)

    # the study picked last is the one shown: a pick made while another is being drawn runs after it, never
    # dropped (Gradio's default for .input drops it, leaving the picker and the page on different studies)
    study.input(_show, study, outputs, api_name="ablations", concurrency_limit=2, trigger_mode="always_last")
    reloaded = reload.click(_reload, study, [study, claims, *outputs], api_visibility="private", concurrency_limit=2)
    return {"load": (_reload, study, [study, claims, *outputs]), "study": study, "reloaded": reloaded}
