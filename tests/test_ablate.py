"""The ablation runner on a tiny study: real Trainer runs, a real results file, resume, reuse, the loader."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import statistics

import pytest
import torch

from gptcore import cli
from gptcore.experiments import ablate
from gptcore.experiments.ablate import (BASE_SEED, STUDIES, Arm, Study, arm_config, budget_dict, compare_arms,
                            load_results, resolve_studies, run_study, summarize)
from gptcore.config import RunConfig, TrainConfig
from gptcore.experiments.run_record import RunMonitor
from gptcore.errors import ConfigError, GptcoreError
from gptcore.training import Trainer, TrainEvent
from tests.tiny_configs import tiny_model, tiny_train

pytestmark = pytest.mark.slow  # trains tiny studies, several models each: started first, beside the rest

TINY_MODEL = tiny_model()
TINY_ARMS = (Arm("two", "2 heads", 2, {"n_head": 2}, writeup_val_loss=1.7),
             Arm("one", "1 head", 1, {"n_head": 1}))
TINY = Study("tiny-heads", "heads of a tiny model", "more heads help", TINY_ARMS, base_model=TINY_MODEL,
             comparisons=(("one", "two"),))


def tiny_budget(max_iters: int = 6) -> TrainConfig:
    return tiny_train(max_iters=max_iters, warmup_iters=1, eval_interval=3, eval_windows=4).validate()


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory, corpus):
    """One seed, then a second seed, then the same again: the life of an interrupted study."""
    out = tmp_path_factory.mktemp("ablations")
    first = run_study(TINY, corpus, out, seeds=1, budget=tiny_budget(), command="pytest", quiet=True)
    snapshot = json.loads(first.path.read_text())
    second = run_study(TINY, corpus, out, seeds=2, budget=tiny_budget(), command="pytest", quiet=True)
    third = run_study(TINY, corpus, out, seeds=2, budget=tiny_budget(), command="pytest", quiet=True)
    return out, (first, second, third), snapshot


def test_runner_writes_a_valid_results_file(study_dir, corpus):
    out, (_, second, _), _ = study_dir
    results = load_results(out / "tiny-heads.json")
    assert results == second.results
    assert results["schema_version"] == 1 and results["study"] == "tiny-heads"
    assert results["budget"] == budget_dict(tiny_budget(), TINY_MODEL)
    assert results["budget"]["tokens_per_run"] == 6 * 8 * 32
    assert results["base_config"]["n_embd"] == 32 and results["created_by"] == "pytest"
    assert [a["name"] for a in results["arms"]] == ["two", "one"]
    for arm in results["arms"]:
        assert [r["seed"] for r in arm["runs"]] == [BASE_SEED, BASE_SEED + 1]
        losses = [r["val_loss"] for r in arm["runs"]]
        assert all(2.0 < x < 4.5 for x in losses)  # trained a little from ln(65) = 4.17
        assert arm["mean_val_loss"] == pytest.approx(statistics.fmean(losses))
        assert arm["std_val_loss"] == pytest.approx(statistics.stdev(losses))
        for run in arm["runs"]:
            assert run["tokens_seen"] == 6 * 8 * 32 and run["steps"] == 6
            assert [p["step"] for p in run["curve"]] == [3, 6]
            assert run["config"]["model"]["n_head"] == arm["value"]
            assert run["config"]["train"]["seed"] == run["seed"]
            assert run["grad_norm_first_layer"] > 0 and run["grad_norm_ratio"] > 0
            assert len(run["grad_norm_curve"]) == 6 and run["diverged"] is False
            # where it ran: the device and the torch of that machine, per run (a study may gather runs from several)
            assert run["device"] == "cpu" and run["torch"] == torch.__version__ and run["wall_time_s"] > 0
    # different seeds really are different runs
    two = results["arms"][0]["runs"]
    assert two[0]["val_loss"] != two[1]["val_loss"]
    assert results["arms"][0]["writeup_val_loss"] == 1.7 and results["arms"][1]["writeup_val_loss"] is None
    # the scale to read the arms against, measured on the same split: what context-blind frequencies give
    from gptcore.evaluate import unigram_loss
    unigram = unigram_loss(corpus.train, corpus.val, corpus.tokenizer.vocab_size)
    assert results["references"] == {"unigram_val_loss": round(unigram, 4)}
    assert f"alone, blind to all context, gives {unigram:.4f} on the same validation split" in summarize(results)


def test_finished_runs_are_kept_not_retrained(study_dir):
    _, (first, second, third), snapshot = study_dir
    assert (first.trained, first.kept) == (2, 0)
    assert (second.trained, second.kept) == (2, 2)  # only the new seed was trained
    assert (third.trained, third.kept) == (0, 4)
    for old_arm, arm in zip(snapshot["arms"], third.results["arms"]):
        assert arm["runs"][0] == old_arm["runs"][0]  # same wall time, same curve: not rerun
    assert third.results["arms"] == second.results["arms"]


def test_runs_with_the_same_config_are_reused_across_studies(study_dir, corpus):
    out, _, _ = study_dir
    other = Study("tiny-pos", "positions", "positions matter",
                  (Arm("learned", "learned", "learned", {"pos_emb": "learned", "n_head": 2}),
                   Arm("none", "none", "none", {"pos_emb": "none", "n_head": 2})), base_model=TINY_MODEL)
    report = run_study(other, corpus, out, seeds=1, budget=tiny_budget(), quiet=True)
    assert (report.trained, report.reused) == (1, 1)
    learned = report.results["arms"][0]["runs"][0]
    assert learned["reused_from"] == "tiny-heads/two"
    heads = load_results(out / "tiny-heads.json")
    assert learned["val_loss"] == heads["arms"][0]["runs"][0]["val_loss"]


def test_a_different_budget_is_refused(study_dir, corpus):
    out, _, _ = study_dir
    with pytest.raises(GptcoreError, match=r"different budget \(max_iters 6 → 7"):
        run_study(TINY, corpus, out, seeds=1, budget=tiny_budget(7), quiet=True)


def test_runs_the_study_no_longer_defines_are_not_dropped(study_dir, corpus, tmp_path):
    """A results file with a run made under another definition is refused, not rewritten without it."""
    out, _, _ = study_dir
    shutil.copy(out / "tiny-heads.json", tmp_path / "tiny-heads.json")
    data = json.loads((tmp_path / "tiny-heads.json").read_text())
    data["arms"][1]["runs"][0]["config"]["model"]["n_embd"] = 48
    (tmp_path / "tiny-heads.json").write_text(json.dumps(data))
    before = (tmp_path / "tiny-heads.json").read_bytes()
    with pytest.raises(GptcoreError, match=r"1 run\(s\) the study no longer defines.*\(one seed 1337\).*would lose them"):
        run_study(TINY, corpus, tmp_path, seeds=2, budget=tiny_budget(), quiet=True)
    assert (tmp_path / "tiny-heads.json").read_bytes() == before


def test_the_attention_kernel_does_not_make_a_run_another_run(study_dir, corpus, tmp_path):
    """Runs recorded with another attention kernel (older results: "fused") are the same runs: kept, not retrained."""
    out, _, _ = study_dir
    data = json.loads((out / "tiny-heads.json").read_text())
    for arm in data["arms"]:
        for run in arm["runs"]:
            run["config"]["model"]["attention"] = "fused"
    (tmp_path / "tiny-heads.json").write_text(json.dumps(data))
    report = run_study(TINY, corpus, tmp_path, seeds=2, budget=tiny_budget(), quiet=True)
    assert report.trained == 0 and report.kept == 4


def _corrupt(results: dict, how: str) -> dict:
    bad = copy.deepcopy(results)
    if how == "no-arms":
        del bad["arms"]
    elif how == "arm-without-runs":
        del bad["arms"][1]["runs"]
    elif how == "string-loss":
        bad["arms"][1]["runs"][0]["val_loss"] = "low"
    elif how == "curve-step":
        bad["arms"][0]["runs"][1]["curve"][0]["step"] = 1.5
    elif how == "version":
        bad["schema_version"] = 2
    elif how == "reference":
        bad["references"] = {"unigram_val_loss": "high"}
    return bad


@pytest.mark.parametrize("how, message", [
    ("no-arms", "is missing key 'arms'"),
    ("arm-without-runs", "arms[1] is missing key 'runs'"),
    ("string-loss", "arm 'one' runs[0]: key 'val_loss' should be a finite number or null"),
    ("curve-step", "arm 'two' runs[1] curve[0]: key 'step' should be an integer"),
    ("version", "schema_version 2 is not supported"),
    ("reference", "'references' should map names to finite numbers"),
])
def test_loader_rejects_a_malformed_file(study_dir, tmp_path, how, message):
    out, _, _ = study_dir
    good = json.loads((out / "tiny-heads.json").read_text())
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_corrupt(good, how)))
    with pytest.raises(GptcoreError) as err:
        load_results(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_loader_rejects_invalid_json(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('{"schema_version": 1, "arms": [')
    with pytest.raises(GptcoreError, match="not valid JSON"):
        load_results(path)


def test_summary_table_and_noise_rule(study_dir):
    out, _, _ = study_dir
    text = summarize(load_results(out / "tiny-heads.json"))
    assert "| 2 heads |" in text and "| 1 head |" in text and "1.7000" in text and "- one vs two:" in text
    c = compare_arms(load_results(out / "tiny-heads.json"), "one", "two")
    assert f"- one vs two: Δ = {c.diff:+.4f} (95% CI {c.ci95[0]:+.4f} to {c.ci95[1]:+.4f}), SE" in text
    fake = {"study": "x", "arms": [
        {"name": "a", "runs": [{"val_loss": v} for v in (1.00, 1.01, 1.02)]},
        {"name": "b", "runs": [{"val_loss": v} for v in (1.20, 1.21, 1.22)]},
        {"name": "c", "runs": [{"val_loss": v} for v in (0.90, 1.30, 1.10)]},
        {"name": "d", "runs": [{"val_loss": 1.0}]}]}
    ab = compare_arms(fake, "a", "b")
    assert ab.diff == pytest.approx(-0.2) and ab.beyond_noise and "a is better" in ab.verdict
    assert ab.df == pytest.approx(4.0) and ab.p_value < 1e-4 and "Welch's t-test, p = " in ab.verdict
    assert ab.ci95[0] < -0.2 < ab.ci95[1] < 0  # the whole interval below zero: a is better
    ca = compare_arms(fake, "c", "a")
    assert ca.beyond_noise is False and ca.p_value > 0.05 and "not distinguishable" in ca.verdict
    # 2.3 standard errors with 3 seeds each passed the old rule of 2 SE; Welch's test does not call it
    close = {"study": "x", "arms": [{"name": "a", "runs": [{"val_loss": v} for v in (1.00, 1.01, 1.02)]},
                                    {"name": "b", "runs": [{"val_loss": v} for v in (1.0188, 1.0288, 1.0388)]}]}
    c = compare_arms(close, "b", "a")
    assert c.diff / c.stderr == pytest.approx(2.3, abs=0.01) and c.beyond_noise is False and 0.05 < c.p_value < 0.1
    assert compare_arms(fake, "d", "a").beyond_noise is None
    with pytest.raises(GptcoreError, match="no arm 'z'"):
        compare_arms(fake, "a", "z")


def test_monitor_flags_nan_and_spikes():
    config = RunConfig(TINY_MODEL, tiny_budget(20))
    monitor = RunMonitor(config)
    for step, loss in enumerate([4.0, 3.0, 2.5, 2.4, 3.2, 2.3, float("nan"), 2.2], start=1):
        monitor.on_event(TrainEvent("step", step, 20, 0.0, train_loss=loss))
    stats = monitor.stability()
    assert stats["nonfinite_steps"] == 1 and stats["loss_spikes"] == 1 and stats["diverged"] is True
    assert stats["max_loss_jump"] == pytest.approx(0.8)
    calm = RunMonitor(config)
    for step, loss in enumerate([4.0, 3.0, 2.5, 2.4, 2.45, 2.3], start=1):
        calm.on_event(TrainEvent("step", step, 20, 0.0, train_loss=loss))
    assert calm.stability()["diverged"] is False and calm.stability()["loss_spikes"] == 0


def test_trainer_on_backward_sees_raw_gradients(corpus, tmp_path):
    seen = []

    def on_backward(model, step):
        seen.append((step, all(p.grad is not None for p in model.parameters())))

    Trainer(RunConfig(TINY_MODEL, tiny_budget(3)), corpus, tmp_path).run(on_backward=on_backward)
    assert seen == [(1, True), (2, True), (3, True)]


def test_study_definitions():
    assert [s.name for s in resolve_studies("all")] == ["heads", "depth", "residual", "norm", "posemb", "baseline"]
    with pytest.raises(ConfigError, match="unknown study 'width'; choose one of: heads, depth"):
        resolve_studies("width")
    heads = STUDIES["heads"]
    assert [a.writeup_val_loss for a in heads.arms] == [1.7172, 1.6691, 1.6393, 1.6288]
    assert [a.writeup_val_loss for a in STUDIES["depth"].arms] == [1.6960, 1.6422, 1.6331, 1.6056]
    base = arm_config(heads, heads.arms[2], tiny_budget(), BASE_SEED, 65)
    assert (base.model.n_embd, base.model.n_head, base.model.n_layer, base.model.block_size,
            base.model.dropout) == (256, 4, 4, 128, 0.2)
    post = arm_config(STUDIES["norm"], STUDIES["norm"].arms[-1], tiny_budget(), BASE_SEED, 65)
    assert (post.model.norm, post.train.lr) == ("post", 0.01)
    assert STUDIES["residual"].base_model.n_layer == 6
    with pytest.raises(ConfigError, match="distinct names"):
        Study("dup", "", "", (Arm("a", "a", 1), Arm("a", "a", 2)))


@pytest.mark.parametrize("argv, message", [
    (["ablate", "--study", "width"], "error: unknown study 'width'; choose one of: heads, depth, residual"),
    (["ablate", "--study", "heads", "--seeds", "0"], "error: --seeds must be at least 1"),
    (["ablate", "--study", "heads", "--max-iters", "0"], "error: --max-iters must be at least 1"),
])
def test_cli_bad_input_is_one_line(capsys, argv, message):
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err


def test_cli_runs_a_study(tmp_path, capsys, monkeypatch):
    """The real command end to end, on the tiny study registered beside the real ones."""
    monkeypatch.setitem(ablate.STUDIES, TINY.name, TINY)
    argv = ["ablate", "--study", "tiny-heads", "--seeds", "1", "--max-iters", "2", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "| 2 heads |" in out and "tiny-heads.json: 2 trained, 0 kept, 0 reused" in out
    results = load_results(tmp_path / "tiny-heads.json")
    assert results["created_by"] == "python -m gptcore ablate --study tiny-heads --seeds 1 --max-iters 2"
    assert results["budget"] == budget_dict(ablate.default_budget(2), TINY_MODEL)
    assert results["arms"][0]["runs"][0]["tokens_seen"] == 2 * 32 * 32
    assert [p.name for p in tmp_path.iterdir()] == ["tiny-heads.json"]  # no weights left behind
    assert cli.main(argv + ["--quiet"]) == 0
    assert "0 trained, 2 kept" in capsys.readouterr().out
    assert cli.main(["ablate", "--study", "tiny-heads", "--summary", "--out", str(tmp_path)]) == 0
    summary = capsys.readouterr().out  # the same table, from the file, without training
    assert "| 2 heads |" in summary and "tiny-heads.json" not in summary
    assert "*Equal wall-clock time:* not measured yet" in summary  # the tab's equal-time view, from the same code
    longer = tmp_path / "longer"
    longer.mkdir()
    data = json.loads((tmp_path / "tiny-heads.json").read_text())
    data["budget"]["max_iters"] = 4
    (longer / "tiny-heads.json").write_text(json.dumps(data))
    argv = ["ablate", "--study", "tiny-heads", "--summary", "--out", str(tmp_path), "--against", str(longer)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out  # one seed an arm: the verdicts cannot be compared yet, and it says so
    assert "Verdicts at each budget" in out and "| one vs two | too few seeds | too few seeds | not yet |" in out
    assert cli.main(argv[:-1] + [str(tmp_path / "nowhere")]) != 0
    assert "nowhere" in capsys.readouterr().err
    assert cli.main(["ablate", "--study", "heads", "--summary", "--out", str(tmp_path)]) != 0  # no results
    assert "heads.json" in capsys.readouterr().err


def test_an_interrupted_run_continues_from_its_work_dir(tmp_path, corpus):
    import threading

    from gptcore.experiments.run_record import train_run
    from gptcore.training import Trainer

    config = arm_config(TINY, TINY_ARMS[0], tiny_budget(9), BASE_SEED, corpus.tokenizer.vocab_size)
    whole = train_run(config, corpus)
    stop = threading.Event()
    work = tmp_path / "work"
    Trainer(config, corpus, work).run(on_event=lambda e: stop.set() if e.kind == "eval" else None, stop=stop)
    assert json.loads((work / "metrics.json").read_text())["status"] == "stopped"
    resumed = train_run(config, corpus, work_dir=work)
    assert resumed["val_loss"] == whole["val_loss"] and resumed["steps"] == 9 - 3
    assert [p["step"] for p in resumed["curve"]] == [p["step"] for p in whole["curve"]] == [3, 6, 9]


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("stop_at", [3, 9])  # mid-run, and at the last step (only the final evaluation left)
def test_a_resumed_run_reports_the_measurements_of_the_whole_run(tmp_path, corpus, stop_at):
    """Spikes, the final training loss, divergence and gradient norms cover every step, not only those trained
    after the resume: the monitor's measurements are saved with each checkpoint and restored with it."""
    from gptcore.experiments.run_record import train_run

    config = arm_config(TINY, TINY_ARMS[0], tiny_budget(9), BASE_SEED, corpus.tokenizer.vocab_size)
    whole = train_run(config, corpus)

    def interrupt(event):
        if event.step == stop_at:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        train_run(config, corpus, on_eval=interrupt, work_dir=tmp_path / "work")
    resumed = train_run(config, corpus, work_dir=tmp_path / "work")
    assert resumed["steps"] == 9 - stop_at and resumed["diverged"] is False
    for key in ("val_loss", "final_train_loss", "min_train_loss", "loss_spikes", "max_loss_jump", "nonfinite_steps"):
        assert resumed[key] == pytest.approx(whole[key]), key
    assert resumed["grad_norm_first_layer"] == pytest.approx(whole["grad_norm_first_layer"], rel=1e-4)
    assert [p["step"] for p in resumed["grad_norm_curve"]] == [p["step"] for p in whole["grad_norm_curve"]]


def test_a_monitor_restored_behind_its_checkpoint_drops_the_steps_it_sees_again(tmp_path):
    config = RunConfig(TINY_MODEL, tiny_budget(20))
    monitor = RunMonitor(config, state_path=tmp_path / "monitor.json")
    for step in range(1, 7):
        monitor.on_backward(None, step)
        monitor.on_event(TrainEvent("step", step, 20, 0.0, train_loss=3.0 - 0.1 * step))
    monitor.on_event(TrainEvent("eval", 6, 20, 0.0, train_loss=2.5, val_loss=2.6))
    again = RunMonitor(config, state_path=tmp_path / "monitor.json")
    assert [s for s, _ in again.losses] == list(range(1, 7)) and again.evals[0]["step"] == 6
    again.on_event(TrainEvent("step", 4, 20, 0.0, train_loss=9.0))  # the run went on from an earlier checkpoint
    assert [s for s, _ in again.losses] == [1, 2, 3, 4] and again.losses[-1][1] == 9.0 and again.evals == []
    (tmp_path / "monitor.json").write_text("{not json")
    assert RunMonitor(config, state_path=tmp_path / "monitor.json").losses == []  # unreadable: start afresh


def test_posemb_compares_rope_with_learned_positions():
    study = resolve_studies("posemb")[0]
    assert [a.name for a in study.arms] == ["learned", "none", "rope"]
    assert ("rope", "learned") in study.comparisons


def test_unsettled_comparisons_get_more_seeds(tmp_path, corpus):
    from gptcore.experiments.ablate import unclear_arms

    fake = {"comparisons": [["a", "b"], ["c", "b"]], "study": "x", "arms": [
        {"name": "a", "runs": [{"val_loss": v} for v in (1.00, 1.01, 1.02)]},
        {"name": "b", "runs": [{"val_loss": v} for v in (1.0188, 1.0288, 1.0388)]},  # p about 0.08: unsettled
        {"name": "c", "runs": [{"val_loss": v} for v in (1.50, 1.51, 1.52)]}]}  # far apart: settled
    assert unclear_arms(fake) == {"a", "b"}
    # just under 0.05 is no clearer than just over it: heads at 2,000 steps, 8 against 4, had p = 0.048
    edge = {"comparisons": [["a", "b"]], "study": "x", "arms": [
        {"name": "a", "runs": [{"val_loss": v} for v in (1.00, 1.01, 1.02)]},
        {"name": "b", "runs": [{"val_loss": v} for v in (1.0228, 1.0328, 1.0428)]}]}
    assert 0.01 < compare_arms(edge, "b", "a").p_value < 0.05 and unclear_arms(edge) == {"a", "b"}
    clear = dict(edge, arms=[edge["arms"][0], {"name": "b", "runs": [{"val_loss": v} for v in (1.05, 1.06, 1.07)]}])
    assert compare_arms(clear, "b", "a").p_value < 0.01 and unclear_arms(clear) == set()
    report = run_study(TINY, corpus, tmp_path, seeds=1, budget=tiny_budget(2), quiet=True, arm_seeds={"one": 3})
    seeds = {arm["name"]: sorted(r["seed"] for r in arm["runs"]) for arm in report.results["arms"]}
    assert seeds == {"two": [BASE_SEED], "one": [BASE_SEED, BASE_SEED + 1, BASE_SEED + 2]}


def _two_arm_study(steps: int, a: tuple, b: tuple, name: str = "x") -> dict:
    return {"study": name, "budget": {"max_iters": steps}, "comparisons": [["a", "b"]],
            "arms": [{"name": "a", "runs": [{"val_loss": v} for v in a]},
                     {"name": "b", "runs": [{"val_loss": v} for v in b]}]}


def test_verdicts_across_budgets_say_whether_a_budget_changes_them():
    from gptcore.experiments.ablation_results import verdicts_across_budgets

    better_short = _two_arm_study(150, (1.00, 1.01, 1.02), (1.20, 1.21, 1.22))
    better_long = _two_arm_study(600, (0.80, 0.81, 0.82), (0.90, 0.91, 0.92))
    table = verdicts_across_budgets([better_long, better_short])
    lines = table.splitlines()
    assert lines[0] == "| comparison | 150 steps | 600 steps | same verdict at every budget? |"
    assert lines[2].startswith("| a vs b | a better (Δ -0.2000, p = ") and lines[2].endswith(" | yes |")
    assert lines[2].count("a better") == 2  # the shorter budget's column first, whatever the order given
    worse_long = _two_arm_study(600, (0.95, 0.96, 0.97), (0.90, 0.91, 0.92))
    assert "a worse" in verdicts_across_budgets([better_short, worse_long]) and \
        verdicts_across_budgets([better_short, worse_long]).splitlines()[2].endswith(" | **no** |")
    noise_long = _two_arm_study(600, (0.90, 1.30, 1.10), (1.00, 1.01, 1.02))
    row = verdicts_across_budgets([better_short, noise_long]).splitlines()[2]
    assert "no difference beyond seed noise (Δ" in row and row.endswith(" | **no** |")
    one_seed = _two_arm_study(600, (0.80,), (0.90,))
    row = verdicts_across_budgets([better_short, one_seed]).splitlines()[2]
    assert "too few seeds" in row and row.endswith(" | not yet |")
    with_new_arm = _two_arm_study(600, (0.80, 0.81, 0.82), (0.90, 0.91, 0.92))
    with_new_arm["arms"].append({"name": "c", "runs": [{"val_loss": v} for v in (0.70, 0.71, 0.72)]})
    with_new_arm["comparisons"].append(["c", "b"])
    lines = verdicts_across_budgets([better_short, with_new_arm]).splitlines()
    assert lines[2].startswith("| a vs b |") and lines[2].endswith(" | yes |")
    assert lines[3].startswith("| c vs b | not run at this budget | c better (Δ -0.2000") and lines[3].endswith(" | – |")
    with pytest.raises(GptcoreError, match="different studies"):
        verdicts_across_budgets([better_short, _two_arm_study(600, (1,), (1,), name="y")])
    with pytest.raises(GptcoreError, match="two budgets"):
        verdicts_across_budgets([better_short])


def test_the_estimate_uses_measured_step_costs_when_they_match_the_runs(tmp_path, corpus, capsys):
    """The printed estimate: the FLOP model at the base speed, or, where this study's seconds per step were
    measured (``--step-cost``) at the runs' threads on the same kind of device, those."""
    from gptcore.experiments.ablate import estimate_seconds
    from gptcore.experiments.ablation_results import step_cost_path

    budget = tiny_budget(6)
    configs = [arm_config(TINY, arm, budget, BASE_SEED, corpus.tokenizer.vocab_size) for arm in TINY_ARMS]
    flops_only = estimate_seconds(configs, len(corpus.val))
    eval_only = estimate_seconds(configs, len(corpus.val), step_seconds=[0.0, 0.0])
    assert 0 < eval_only < flops_only
    assert estimate_seconds(configs, len(corpus.val), step_seconds=[2.0, None]) == pytest.approx(
        eval_only + 6 * 2.0 + (flops_only - eval_only) / 2)  # the tiny arms cost the same by the FLOP model
    budget = dataclasses.replace(budget, threads=1, device="cpu")
    cost = {"arms": {"two": {"seconds_per_step": 30.0}, "one": {"seconds_per_step": 10.0}}, "threads": 1, "device": "cpu"}
    step_cost_path(tmp_path, TINY.name).write_text(json.dumps(cost))
    run_study(TINY, corpus, tmp_path, seeds=1, budget=budget)
    out = capsys.readouterr().out
    assert "estimated 4.0 min from the seconds per step measured at 1 thread(s)" in out  # 6 steps x (30 + 10) s
    (tmp_path / "again").mkdir()
    step_cost_path(tmp_path / "again", TINY.name).write_text(json.dumps(dict(cost, threads=2)))  # measured otherwise
    run_study(TINY, corpus, tmp_path / "again", seeds=1, budget=budget)
    assert "tokens/s for the base model" in capsys.readouterr().out


def test_a_run_another_study_is_training_waits_for_it_instead_of_training_twice(tmp_path, corpus, monkeypatch):
    """Two studies side by side share a run (the base model is an arm of both): the second to reach it trains
    its other runs first, then waits for the first study's result and reuses it. A run is in progress while
    a live process holds its lock; the lock of a process that died is not."""
    import os
    import socket
    import subprocess
    import sys

    from gptcore.experiments.ablate import WORK_DIR
    from gptcore.experiments.run_identity import run_key
    from gptcore.experiments.sharing import LOCK_FILE

    budget = tiny_budget(6)
    other = Study("tiny-twin", "the same two-head arm in another study", "", (TINY_ARMS[0],), base_model=TINY_MODEL)
    shared = arm_config(TINY, TINY_ARMS[0], budget, BASE_SEED, corpus.tokenizer.vocab_size)
    key = run_key(shared)

    def lock(directory, pid):
        busy = directory / WORK_DIR / f"two-seed{BASE_SEED}-{key}"  # same arm name: the lock tells them apart
        busy.mkdir(parents=True)
        (busy / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
        return busy

    busy = lock(tmp_path, os.getppid())  # a live process other than this one
    trained, waited = [], []
    real_train_run = ablate.train_run
    monkeypatch.setattr(ablate, "train_run", lambda config, *a, **k: trained.append(config.model.n_head)
                        or real_train_run(config, *a, **k))

    def twin_finishes(seconds):  # while this study waits, the twin records the shared run
        waited.append(seconds)
        shutil.rmtree(busy)
        run_study(other, corpus, tmp_path, seeds=1, budget=budget, quiet=True)

    monkeypatch.setattr(ablate.time, "sleep", twin_finishes)
    report = run_study(TINY, corpus, tmp_path, seeds=1, budget=budget, quiet=True)
    assert trained == [1, 2]  # its own run first (1 head), then the twin trained the shared one (2 heads)
    assert len(waited) == 1 and report.trained == 1 and report.reused == 1
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock(tmp_path / "orphan", int(dead.stdout))  # a run whose process died: resumed here, no waiting
    trained.clear()
    assert run_study(TINY, corpus, tmp_path / "orphan", seeds=1, budget=budget, quiet=True).trained == 2
    assert trained == [2, 1] and len(waited) == 1 and not (tmp_path / "orphan" / WORK_DIR).exists()


def test_two_processes_running_one_study_keep_each_others_runs(tmp_path, corpus, monkeypatch):
    """A study run in two processes (to use two cores): each rewrites the results file after every run, so
    each must keep the runs the other recorded, and never train a run the other has recorded meanwhile."""
    budget = tiny_budget(6)
    elsewhere = run_study(TINY, corpus, tmp_path / "other", seeds=1, budget=budget, quiet=True).results
    mine = tmp_path / "shared"
    trained = []
    real_train_run = ablate.train_run

    def train(config, *args, **kwargs):
        trained.append(config.model.n_head)
        run = real_train_run(config, *args, **kwargs)
        # meanwhile the other process recorded its runs (here: both arms' seed 0) in the same file
        shutil.copy(tmp_path / "other" / "tiny-heads.json", mine / "tiny-heads.json")
        return run

    monkeypatch.setattr(ablate, "train_run", train)
    report = run_study(TINY, corpus, mine, seeds=1, budget=budget, quiet=True)
    assert trained == [2] and report.trained == 1 and report.kept == 1  # the 1-head run came from the other
    saved = load_results(mine / "tiny-heads.json")
    one = [a for a in saved["arms"] if a["name"] == "one"][0]["runs"]
    assert one == [a for a in elsewhere["arms"] if a["name"] == "one"][0]["runs"]
    assert [len(a["runs"]) for a in saved["arms"]] == [1, 1]  # the run both made is recorded once


def test_only_a_live_process_holds_a_run():
    import os

    from gptcore.experiments.sharing import _process_alive

    assert _process_alive(os.getpid()) and _process_alive(str(os.getppid()))
    assert not any(_process_alive(pid) for pid in (0, -1, None, "x", 2 ** 80))
