"""Ablations tab on a real (tiny) results file written by gptcore's ablation runner."""

from __future__ import annotations

import json
import shutil

import gradio as gr
import pytest

from demo.ablations import ablations, list_studies
from demo_support import make_ablations


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory, corpus):
    return make_ablations(tmp_path_factory.mktemp("ablations"), corpus)


def test_without_results_the_tab_says_so(tmp_path):
    intro, summary, table, curves, runs = ablations(tmp_path / "nothing-here", None)
    assert "No ablation results yet" in intro and "python -m gptcore ablate" in intro
    assert summary is None and curves is None and runs.empty


def test_a_study_gives_charts_with_the_writeup_and_tables(results_dir):
    intro, summary, table, curves, runs = ablations(results_dir, None)
    assert "heads of a tiny model" in intro and "more heads help" in intro
    ax = summary.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1 head", "2 heads"]
    assert ax.get_xlabel() == "n_head"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("2 seed" in t for t in legend) and "write-up" in legend
    assert "| 1 head |" in table and "1.7172" in table  # gptcore's summary table, with the write-up's number
    assert [t.get_text() for t in curves.axes[0].get_legend().get_texts()] == ["1 head", "2 heads"]
    assert len(runs) == 4 and set(runs["arm"]) == {"1 head", "2 heads"} and runs["final val loss"].gt(0).all()


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
