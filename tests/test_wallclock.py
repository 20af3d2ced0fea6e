"""Ablation arms at equal wall-clock time: reading curves between evaluations, and the common time."""

from __future__ import annotations

import json

import pytest

from gptcore.experiments.ablate import Arm, Study
from gptcore.experiments.wallclock import equal_time, loss_at_step, measure_step_seconds, run_step_cost
from gptcore.config import ModelConfig
from gptcore.device import resolve_device

CURVE = [{"step": 100, "val_loss": 3.0}, {"step": 200, "val_loss": 2.0}, {"step": 300, "val_loss": 1.5}]


def test_loss_between_evaluations_is_linear_and_none_outside():
    assert loss_at_step(CURVE, 150) == pytest.approx(2.5)
    assert loss_at_step(CURVE, 300) == pytest.approx(1.5) and loss_at_step(CURVE, 100) == pytest.approx(3.0)
    assert loss_at_step(CURVE, 50) is None and loss_at_step(CURVE, 301) is None
    assert loss_at_step([{"step": 5, "val_loss": None}], 5) is None


def _results():
    def run(scale):
        return {"curve": [{"step": p["step"], "val_loss": p["val_loss"] * scale} for p in CURVE]}
    return {"arms": [{"name": "small", "label": "small", "runs": [run(1.0), run(1.02)]},
                     {"name": "big", "label": "big", "runs": [run(0.9), run(0.92)]}]}


def test_a_costlier_arm_is_read_earlier_on_its_curve():
    cost = {"arms": {"small": {"seconds_per_step": 1.0}, "big": {"seconds_per_step": 2.0}}}
    view = equal_time(_results(), cost)
    assert view["seconds"] == pytest.approx(300.0)  # big needs 600 s for its 300 steps; small 300 s
    small, big = view["arms"]
    assert small["step"] == 300 and big["step"] == 150
    assert big["values"] == pytest.approx([2.5 * 0.9, 2.5 * 0.92])  # half-way between its evals at 100 and 200
    assert small["mean"] == pytest.approx(1.5 * 1.01) and small["std"] > 0
    assert equal_time(_results(), {"arms": {"small": {"seconds_per_step": 1.0}}}) is None  # a cost missing
    unrun = _results()
    unrun["arms"].append({"name": "huge", "label": "huge", "runs": []})  # a study still running
    assert [a["name"] for a in equal_time(unrun, cost)["arms"]] == ["small", "big"]


def test_step_cost_is_measured_per_arm_and_written(tmp_path, corpus, monkeypatch):
    tiny = Study("tinyheads", "t", "c", (Arm("1", "1 head", 1, {"n_head": 1}), Arm("2", "2 heads", 2, {"n_head": 2})),
                 base_model=ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, dropout=0.0),
                 comparisons=(("2", "1"),))
    cost = measure_step_seconds(tiny, corpus, threads=1, device=resolve_device("cpu"), steps=2, repeats=2)
    assert set(cost) == {"1", "2"} and all(c["seconds_per_step"] > 0 and len(c["runs"]) == 2 for c in cost.values())
    monkeypatch.setattr("gptcore.experiments.wallclock.resolve_studies", lambda name: [tiny])
    (path,) = run_step_cost("tinyheads", corpus, tmp_path, 1, "cpu", "pytest", steps=2, repeats=2)
    written = json.loads(path.read_text())
    assert path.name == "tinyheads.step_cost.json" and written["threads"] == 1 and set(written["arms"]) == {"1", "2"}


def test_the_common_time_is_set_by_an_arms_shortest_seed_and_every_seed_counts():
    short, longer = CURVE[:2], CURVE  # seeds whose curves end at 200 and at 300 steps
    results = {"arms": [{"name": "a", "label": "a", "runs": [{"curve": short}, {"curve": longer}]}]}
    view = equal_time(results, {"arms": {"a": {"seconds_per_step": 1.0}}})
    assert view["seconds"] == pytest.approx(200.0)
    assert view["arms"][0]["values"] == pytest.approx([2.0, 2.0])
