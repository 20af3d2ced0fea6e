"""Ablations tab on a real (tiny) results file written by gptcore's ablation runner."""

from __future__ import annotations

import json
import shutil

import gradio as gr
import pytest
import torch

from demo.server.settings import REPO_ROOT
from demo.tabs.ablations import _shown, ablations, list_studies


@pytest.fixture(scope="module")
def results_dir(demo_ablations):
    return demo_ablations


def test_without_results_the_tab_says_so(tmp_path):
    intro, summary, notes, table, curves, runs = ablations(tmp_path / "nothing-here", None)
    assert "No ablation results yet" in intro and "python -m gptcore ablate" in intro
    assert summary is None and curves is None and runs.empty


def test_a_study_gives_charts_with_the_writeup_and_tables(results_dir):
    intro, summary, notes, table, curves, runs = ablations(results_dir, None)
    assert "heads of a tiny model" in intro and "more heads help" in intro
    assert "**Budget:** 6 steps of 8×32 tokens" in notes and "Welch" in notes
    assert "No conclusion has been written" in notes
    ax = summary.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1 head", "2 heads"]
    assert ax.get_xlabel() == "n_head"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("2 seed" in t for t in legend) and "write-up" in legend
    assert "| 1 head |" in table and "1.7172" in table  # gptcore's summary table, with the write-up's number
    assert "more heads help" not in table and "###" not in table  # the intro above says it already
    assert [t.get_text() for t in curves.axes[0].get_legend().get_texts()] == ["1 head", "2 heads"]
    assert len(runs) == 4 and set(runs["arm"]) == {"1 head", "2 heads"} and runs["final val loss"].gt(0).all()
    assert set(runs["ran on"]) == {f"cpu, torch {torch.__version__}"}


def test_studies_are_listed_with_the_writeups_tables_first(results_dir, tmp_path):
    for name in ("zeta", "depth", "heads"):
        shutil.copy(results_dir / "heads.json", tmp_path / f"{name}.json")
    assert list_studies(tmp_path) == ["heads", "depth", "zeta"]


def test_unknown_and_damaged_studies_are_clear_errors(results_dir, tmp_path):
    with pytest.raises(gr.Error, match="no results for study 'width'; available: heads"):
        ablations(results_dir, "width")
    data = json.loads((results_dir / "heads.json").read_text())
    del data["arms"][0]["runs"]
    (tmp_path / "heads.json").write_text(json.dumps(data))
    with pytest.raises(gr.Error, match="missing key 'runs'"):
        ablations(tmp_path, "heads")
    (tmp_path / "heads.json").write_text("{not json")
    with pytest.raises(gr.Error, match="not valid JSON"):
        ablations(tmp_path, "heads")


def test_the_notes_beside_the_chart_are_the_written_conclusion(results_dir, tmp_path):
    shutil.copy(results_dir / "heads.json", tmp_path / "heads.json")
    (tmp_path / "heads.md").write_text("**Budget caveat.** tiny.\n\nConclusion: **More heads help a little.**")
    _, _, notes, _, _, _ = ablations(tmp_path, "heads")
    assert notes.startswith("**Budget:**") and "Conclusion: **More heads help a little.**" in notes


def test_categorical_arms_are_points_and_ordered_arms_a_line(results_dir):
    from demo.tabs.ablations import is_ordered
    from demo.views.plots import ablation_summary_figure

    assert is_ordered([{"value": 1}, {"value": 2}]) and not is_ordered([{"value": True}, {"value": False}])
    assert not is_ordered([{"value": "pre"}, {"value": "post"}])
    labels = [f"{n}-norm, lr {lr}" for lr in ("0.001", "0.003", "0.01") for n in ("pre", "post")]
    fig = ablation_summary_figure(labels, [[2.4, 2.41]] * 6, [None] * 6, "arm", "norm", ordered=False)
    ours = fig.axes[0].lines[0]
    assert ours.get_linestyle() == "None"  # no line joins categories
    ticks = fig.axes[0].get_xticklabels()
    assert ticks[0].get_rotation() == 30 and all(len(line) <= 10 for t in ticks for line in t.get_text().split("\n"))
    fig = ablation_summary_figure(["1", "2"], [[2.4, 2.41]] * 2, [None] * 2, "n_head", "heads", ordered=True)
    assert fig.axes[0].lines[0].get_linestyle() == "-"
    # the error bar is the sample standard deviation (n - 1), the one the table beside it reports
    fig = ablation_summary_figure(["1"], [[2.0, 2.1, 2.2]], [None], "n_head", "heads")
    (bar,) = fig.axes[0].containers[0].lines[2]
    (low, high), = [segment[:, 1] for segment in bar.get_segments()]
    assert high - low == pytest.approx(2 * 0.1)


def test_the_tab_opens_on_every_claims_verdict(tmp_path):
    from demo.tabs.ablations import claims_markdown

    assert "No claim-by-claim summary" in claims_markdown(tmp_path)
    (tmp_path / "claims.md").write_text("| claim | verdict |\n|---|---|\n| residuals | confirmed |\n")
    assert "| residuals | confirmed |" in claims_markdown(tmp_path)


def test_the_unigram_level_is_drawn_only_where_an_arm_comes_near_it():
    from demo.views.plots import ablation_summary_figure

    def unigram_lines(runs):
        fig = ablation_summary_figure(["on", "off"], runs, [None] * 2, "arm", "residual", ordered=False, unigram=3.35)
        return [line for line in fig.axes[0].lines if "unigram" in str(line.get_label())]

    (line,) = unigram_lines([[2.0, 2.01], [3.357, 3.356]])  # an arm stuck at character frequencies
    assert list(line.get_ydata()) == [3.35, 3.35]
    assert unigram_lines([[1.62, 1.63], [1.72, 1.73]]) == []  # far above every arm: left out


def test_equal_wall_clock_time_needs_measured_step_costs(results_dir, tmp_path):
    from gptcore.experiments.ablation_results import step_cost_path

    directory = tmp_path / "study"
    shutil.copytree(results_dir, directory)
    _, _, notes, table, _, _ = ablations(directory, "heads")
    assert "not measured yet" in table and "--step-cost --out study`" in table
    assert str(tmp_path) not in table + notes  # a visitor never sees where the server keeps its files
    # the command names a folder of the repository as it is there; the one outside it, by its name alone
    assert _shown(REPO_ROOT / "checkpoints" / "ablations") == "checkpoints/ablations" and _shown(directory) == "study"
    (directory / "heads.md").write_text(f"Measured in {tmp_path}/runs/heads.\n")  # a conclusion naming a folder
    _, _, notes, _, _, _ = ablations(directory, "heads")
    assert str(tmp_path) not in notes and "runs/heads" not in notes
    # equal costs (a measured file's shape; measuring is tested in test_wallclock.py): both arms at their end
    step_cost_path(directory, "heads").write_text(json.dumps(
        {"arms": {"1": {"seconds_per_step": 0.5}, "2": {"seconds_per_step": 0.5}}, "device": "cpu", "threads": 1}))
    assert list_studies(directory) == ["heads"]  # the step costs are not a study
    *_, table, _, _ = ablations(directory, "heads")
    assert "At equal wall-clock time" in table and "| 1 head |" in table.split("At equal")[1]
    assert table.split("At equal")[1].count("(2 seeds)") == 2


def test_a_sibling_directory_adds_the_same_studies_at_another_budget(results_dir, tmp_path):
    from demo.tabs.ablations import study_choices

    primary, longer = tmp_path / "ablations", tmp_path / "ablations-2000"
    shutil.copytree(results_dir, primary)
    shutil.copytree(results_dir, longer)
    data = json.loads((longer / "heads.json").read_text())
    data["budget"]["max_iters"] = 2000
    data["arms"][1]["runs"] = data["arms"][1]["runs"][:1]
    (longer / "heads.json").write_text(json.dumps(data))
    assert list_studies(primary) == ["ablations-2000/heads", "heads"]
    shutil.copytree(results_dir, tmp_path / "ablations-600")
    assert list_studies(primary) == ["ablations-2000/heads", "ablations-600/heads", "heads"]
    shutil.rmtree(tmp_path / "ablations-600")
    assert study_choices(primary) == [("heads, 2,000 steps a run", "ablations-2000/heads"),
                                      ("heads, 6 steps a run", "heads")]
    intro, summary, notes, table, curves, runs = ablations(primary, "ablations-2000/heads")
    assert "**Budget:** 2000 steps" in notes and "Still running" in notes and len(runs) == 3
    budgets = table.split("at each budget the study ran")[1]
    assert "| 6 steps | 2,000 steps |" in budgets and " | not yet |" in budgets  # the 2,000-step arm has 1 seed
    assert "at each budget" in ablations(primary, "heads")[3]  # from either budget's page
    assert "with 1 to 2 seeds each" in notes
    assert "Still running" in ablations(primary, "heads")[2]  # the tiny study has 2 seeds an arm
    assert "with 2 seeds each" in ablations(primary, "heads")[2]
    with pytest.raises(gr.Error, match="no results for study"):
        ablations(primary, "../ablations-2000/heads")


def test_a_study_picked_while_another_is_drawn_is_shown_after_it(tmp_path):
    """Gradio's default for a dropdown's input event drops a pick made while the previous one is pending, which
    left the picker on one study and the page on another: the tab asks for the last pick to run instead."""
    from demo.tabs.ablations import build_tab

    with gr.Blocks() as page:
        build_tab(tmp_path)
    (show,) = [fn for fn in page.fns.values() if fn.api_name == "ablations"]
    assert show.trigger_mode == "always_last"


# ---- the arms' kept models, opened from the tab ---------------------------------------------------------------

def test_the_arms_models_are_listed_with_their_seed_and_whole_split_loss(results_dir):
    from demo.tabs.arm_models import arm_choices, arm_models_api
    from gptcore.experiments.ablation_results import load_results

    recorded = {arm["name"]: arm["runs"][0] for arm in load_results(results_dir / "heads.json")["arms"]}
    notes, first, second = arm_choices(results_dir, "heads")
    # the extremes picked, so that one press compares the smallest arm with the largest
    assert first["choices"] == [("1 head (seed 1337)", "ablations/heads-1"), ("2 heads (seed 1337)", "ablations/heads-2")]
    assert (first["value"], second["value"]) == ("ablations/heads-1", "ablations/heads-2")
    api = arm_models_api(results_dir, "heads")
    assert api["study"] == "heads" and api["steps"] == 6
    for arm in api["arms"]:
        assert arm["model"] == f"ablations/heads-{arm['arm']}" and arm["seed"] == 1337 and arm["missing"] is None
        assert arm["recorded_val_loss"] == recorded[arm["arm"]]["val_loss"] == recorded[arm["arm"]]["val_loss"]
        assert arm["val_loss"] == pytest.approx(arm["recorded_val_loss"], abs=2e-3)  # float16 weights
        assert f"| {arm['label']} | `{arm['model']}` | 1337 | {arm['val_loss']:.4f} ({arm['recorded_val_loss']:.4f}) |" \
            in notes
    assert "whole validation split" in notes and "6 steps" in notes


def test_a_study_without_kept_models_says_how_to_keep_them(results_dir, tmp_path):
    from demo.tabs.arm_models import arm_choices

    shutil.copytree(results_dir, tmp_path / "ablations", ignore=shutil.ignore_patterns("models"))
    notes, first, second = arm_choices(tmp_path / "ablations", "heads")
    assert first["choices"] == [] and first["value"] is None and second["value"] is None
    assert notes.count("not kept; `python -m gptcore ablate --study heads --max-iters 6 --seeds 1 --keep-models") == 2
    assert str(tmp_path) not in notes


def test_opening_an_arm_moves_to_the_inside_tab_with_its_model(results_dir, demo_checkpoints, tmp_path):
    from demo.server.registry import ModelRegistry
    from demo.server.results_folders import sources
    from demo.tabs.arm_models import open_one, open_two

    registry = ModelRegistry(demo_checkpoints, tmp_path / "runs", "tiny", results_dirs=sources(results_dir))
    assert {"ablations/heads-1", "ablations/heads-2"} <= set(registry.names(attention_only=True))
    assert registry.get("ablations/heads-2").config.model.n_head == 2
    tabs, picker, views = open_one(registry, "ablations/heads-1")
    assert (tabs.selected, picker["value"], views.selected) == ("inside", "ablations/heads-1", "inside-predictions")
    tabs, first, second, views = open_two(registry, "ablations/heads-1", "ablations/heads-2")
    assert (first["value"], second["value"], views.selected) == ("ablations/heads-1", "ablations/heads-2",
                                                                "inside-compare")
    with pytest.raises(gr.Error) as refused:
        open_one(registry, None)
    assert refused.value.message == "pick the arm first: this study has no kept model with attention"
    with pytest.raises(gr.Error, match="unknown checkpoint '../heads-1'"):
        open_two(registry, "ablations/heads-1", "../heads-1")


def test_an_arm_without_attention_is_offered_for_sampling_only(corpus, demo_checkpoints, tmp_path):
    """A bigram has no attention: the Inside tab has nothing to show of it, so its model is named for the Sample
    tab, left out of the arm pickers, and refused in a sentence if asked for."""
    from demo.server.registry import ModelRegistry
    from demo.server.results_folders import sources
    from demo.tabs.arm_models import arm_choices, arm_models_api, open_one, open_two
    from demo_support import tiny_model, tiny_train
    from gptcore.experiments.ablate import Arm, Study, run_study

    study = Study("baseline", "a GPT against a bigram", "attention helps",
                  (Arm("gpt", "GPT", "gpt", {"arch": "gpt"}), Arm("bigram", "bigram", "bigram", {"arch": "bigram"})),
                  base_model=tiny_model(), comparisons=(("gpt", "bigram"),))
    budget = tiny_train(max_iters=6, warmup_iters=1, eval_interval=3, eval_windows=4).validate()
    run_study(study, corpus, tmp_path / "ablations", seeds=1, budget=budget, command="pytest", quiet=True,
              keep_models=True)
    notes, first, second = arm_choices(tmp_path / "ablations", "baseline")
    assert first["choices"] == [("GPT (seed 1337)", "ablations/baseline-gpt")]
    assert second["choices"] == [] and second["value"] is None  # one model with attention: none to compare
    assert "| bigram | `ablations/baseline-bigram` | 1337 |" in notes
    assert "No attention to look inside in `ablations/baseline-bigram`: sample from it in the Sample tab" in notes
    assert [a["arch"] for a in arm_models_api(tmp_path / "ablations", "baseline")["arms"]] == ["gpt", "bigram"]
    registry = ModelRegistry(demo_checkpoints, tmp_path / "runs", "tiny", results_dirs=sources(tmp_path / "ablations"))
    assert "ablations/baseline-bigram" in set(registry.names()) - set(registry.names(attention_only=True))
    with pytest.raises(gr.Error) as refused:
        open_one(registry, "ablations/baseline-bigram")
    assert refused.value.message == ("ablations/baseline-bigram has no attention to look inside; sample from it in "
                                     "the Sample tab")
    with pytest.raises(gr.Error) as refused:
        open_two(registry, "ablations/baseline-gpt", None)
    assert refused.value.message == "pick the arm to compare with first: a comparison needs two kept models with attention"


def test_an_unknown_study_is_refused_in_a_sentence(results_dir):
    from demo.tabs.arm_models import arm_choices, arm_models_api

    for call in (arm_choices, arm_models_api):
        with pytest.raises(gr.Error) as refused:
            call(results_dir, "../heads")
        assert refused.value.message == "no results for study '../heads'; available: heads"
