"""Tests for promises that earlier tests could not break: each one fails when the promise is broken
(the checks were made by planting the bug: see docs/LOG.md)."""

import threading
import types

import pytest
import torch

from gptcore.checkpoint import WEIGHTS
from gptcore.checkpoint import load_checkpoint
from gptcore.config import RunConfig
from gptcore.storage import load_tensors, read_json
from gptcore.training import Trainer, loop
from tests.tiny_configs import tiny_model, tiny_train


def _config(**train) -> RunConfig:
    return RunConfig(tiny_model(n_layer=1), tiny_train(**train))


class ScriptedEstimates:
    """Stands in for the periodic validation estimate: returns scripted values and keeps a copy of the
    weights it was shown, so a test knows which weights each estimate belonged to. The final whole-split
    evaluation (``starts`` None) is the real one."""

    def __init__(self, values):
        self.values, self.seen = list(values), []
        self.real = loop.split_loss

    def __call__(self, model, data, block_size, batch_size=64, starts=None, dtype=torch.float32):
        if starts is None:
            return self.real(model, data, block_size, batch_size, starts, dtype)
        self.seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return self.values.pop(0)


def _same_weights(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k].float(), b[k].float()) for k in a)


def test_the_checkpoint_keeps_the_best_weights_not_the_latest(tmp_path, corpus, monkeypatch):
    estimates = ScriptedEstimates([3.0, 2.0, 2.5, 2.6])  # evaluations at steps 5, 10, 15, 20: best at 10
    monkeypatch.setattr(loop, "split_loss", estimates)
    result = Trainer(_config(), corpus, tmp_path / "r").run()
    assert result.best_step == 10
    stored = load_tensors(tmp_path / "r" / WEIGHTS)
    assert _same_weights(stored, estimates.seen[1]) and not _same_weights(stored, estimates.seen[3])


def test_stopping_from_another_thread_keeps_the_best_weights(tmp_path, corpus, monkeypatch):
    estimates = ScriptedEstimates([2.0, 2.5, 9.9])  # 5: best, 10: worse, then the stop's own evaluation
    monkeypatch.setattr(loop, "split_loss", estimates)
    stop = threading.Event()

    def on_event(event):
        if event.kind == "eval" and event.step == 10:
            stop.set()

    result = Trainer(_config(max_iters=100_000), corpus, tmp_path / "r").run(on_event=on_event, stop=stop)
    assert result.stopped and result.best_step == 5
    assert _same_weights(load_tensors(tmp_path / "r" / WEIGHTS), estimates.seen[0])
    assert load_checkpoint(tmp_path / "r").metrics["status"] == "stopped"


def test_a_time_budget_paces_the_schedule_to_its_end(tmp_path, corpus):
    """With a budget and a step limit far away, the warm-down still ends when the budget does."""
    lrs = []
    Trainer(_config(max_iters=100_000, time_budget=1.5, schedule="linear", warmdown_frac=0.5, warmup_iters=0,
                    min_lr_ratio=0.1, eval_interval=100_000), corpus, tmp_path / "t").run(
        on_event=lambda e: e.kind == "step" and lrs.append(e.lr))
    assert lrs[0] == pytest.approx(3e-3)
    assert lrs[-1] < 0.4 * 3e-3  # well into the warm-down (without pacing it would still be at the peak)
    assert all(b <= a + 1e-12 for a, b in zip(lrs, lrs[1:]))


class FakeClock:
    """perf_counter for the training loop that moves 0.01 s per call: elapsed time becomes a count."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        self.now += 0.01
        return self.now


def test_resume_keeps_the_best_loss_the_history_and_the_elapsed_time(tmp_path, corpus, monkeypatch):
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=FakeClock().perf_counter))
    estimates = ScriptedEstimates([3.0, 1.0, 2.0, 2.5])  # steps 5, 10 | resumed: 15, 20 (both worse than 10)
    monkeypatch.setattr(loop, "split_loss", estimates)
    stop = threading.Event()
    Trainer(_config(), corpus, tmp_path / "r").run(
        on_event=lambda e: e.kind == "eval" and e.step == 10 and stop.set(), stop=stop)
    before = read_json(tmp_path / "r" / "metrics.json")
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=FakeClock().perf_counter))
    result = Trainer(_config(), corpus, tmp_path / "r", resume=True).run()
    metrics = read_json(tmp_path / "r" / "metrics.json")
    assert result.best_step == 10 and metrics["best_step"] == 10  # a reset best loss would take step 15
    assert _same_weights(load_tensors(tmp_path / "r" / WEIGHTS), estimates.seen[1])
    assert [h["step"] for h in metrics["history"]] == [5, 10, 15, 20]
    elapsed = [h["elapsed"] for h in metrics["history"]]
    assert elapsed == sorted(elapsed) and elapsed[2] > before["history"][-1]["elapsed"]
    assert metrics["wall_time_s"] > before["wall_time_s"]


def test_a_run_killed_between_evaluations_resumes_exactly(tmp_path, corpus):
    """The state on disk is the last evaluation's: a crash at step 7 resumes from 5 and repeats steps 6-7
    with the same batches and dropout masks as the run that never crashed."""
    config = _config()
    config = config.with_overrides({"dropout": 0.1})
    full = []
    Trainer(config, corpus, tmp_path / "a").run(on_event=full.append)

    class Crash(Exception):
        pass

    def crash_at_seven(event):
        if event.kind == "step" and event.step == 7:
            raise Crash

    with pytest.raises(Crash):
        Trainer(config, corpus, tmp_path / "b").run(on_event=crash_at_seven)
    resumed = []
    Trainer(config, corpus, tmp_path / "b", resume=True).run(on_event=resumed.append)
    steps = {e.step: e.train_loss for e in resumed if e.kind == "step"}
    assert min(steps) == 6
    assert steps == {e.step: e.train_loss for e in full if e.kind == "step" and e.step >= 6}


def test_every_step_is_reported_when_a_run_stops_between_evaluations(tmp_path, corpus):
    """Losses are read one step late (so a GPU never waits): a stop must still report the last step."""
    stop = threading.Event()
    steps = []

    def on_event(event):
        if event.kind == "step":
            steps.append(event.step)
            if event.step == 7:
                stop.set()

    result = Trainer(_config(eval_interval=100), corpus, tmp_path / "r").run(on_event=on_event, stop=stop)
    assert steps == list(range(1, result.steps + 1)) and result.steps == 8
