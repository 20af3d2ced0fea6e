"""Train tab: form validation, upload checks, and real runs in a worker process (start, refuse, stop, fail)."""

from __future__ import annotations

import time

import gradio as gr
import pytest

from demo.server.registry import ModelRegistry
from demo.server.settings import AppSettings, Limits
from demo.tabs.train import (ITERATIONS, QUICK, SECONDS, SHAKESPEARE, UPLOAD, app_presets, build_config, curve_frame,
                        read_upload, start_run, status_markdown)
from demo.tabs.replay import LIVE, follow_live, replay_sources, show
from demo.server.training_job import NotYourRunError, RunInProgressError, TrainingManager, TrainJobSpec
from gptcore.checkpoint import load_checkpoint
from gptcore.errors import ConfigError, GptcoreError

pytestmark = pytest.mark.slow  # the Train tab's real training runs: started first, beside the rest

LIMITS = Limits()
WAIT = 900.0  # seconds: only against a hang; a run ends (or stops) long before on any machine, however busy
QUICK_FORM = dict(preset=QUICK, n_layer=2, n_head=4, n_embd=64, block_size=64, lr=3e-3)


def test_the_quick_default_is_small_and_fast():
    cfg = app_presets()[QUICK][1]
    assert (cfg.model.n_layer, cfg.model.n_embd, cfg.model.block_size, cfg.train.dtype) == (2, 64, 64, "bfloat16")
    assert cfg.train.threads == 1 and cfg.train.eval_interval == 50 and cfg.train.sample_interval > 0


def test_the_chart_always_has_both_curves():
    from demo.server.training_job import RunStatus

    empty = curve_frame(RunStatus())
    assert list(empty["curve"]) == ["train", "validation"] and empty["loss"].isna().all()
    assert empty["step"].dtype.kind == "i" and empty["loss"].dtype.kind == "f"


def test_stop_conditions_are_capped():
    by_time = build_config(LIMITS, **QUICK_FORM, stop_mode=SECONDS, stop_value=90)
    assert by_time.train.time_budget == 90 and by_time.train.max_iters == LIMITS.max_train_iters
    by_steps = build_config(LIMITS, **QUICK_FORM, stop_mode=ITERATIONS, stop_value=300)
    assert by_steps.train.max_iters == 300 and by_steps.train.time_budget == LIMITS.max_train_seconds


@pytest.mark.parametrize("change, message", [
    (dict(stop_value=601), "time limit .* between 5 and 600"),
    (dict(stop_value="60"), "time limit .* must be a number .* got '60'"),
    (dict(lr="fast"), "learning rate must be a number .* got 'fast'"),
    (dict(lr=float("inf")), "learning rate must be a number .* got inf"),
    (dict(stop_mode=ITERATIONS, stop_value=10**6), "number of iterations must be a whole number between"),
    (dict(stop_mode="forever"), "stop condition must be"),
    (dict(n_head=3), "divisible by n_head"),
    (dict(n_layer=0), "n_layer must be a whole number between 1 and 8"),
    (dict(n_embd=64.5), "n_embd must be a whole number"),
    (dict(lr=0), "learning rate must be a number between"),
    (dict(preset="huge"), "unknown preset 'huge'"),
])
def test_bad_forms_are_refused_clearly(change, message):
    form = dict(QUICK_FORM, stop_mode=SECONDS, stop_value=60)
    form.update(change)
    with pytest.raises((ValueError, ConfigError), match=message):
        build_config(LIMITS, **form)


def test_uploads_must_be_small_utf8_and_long_enough(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("hello world, this is my corpus.\n" * 100, encoding="utf-8")
    assert read_upload(str(good), LIMITS, 32).startswith("hello world")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("café ".encode("latin-1") * 500)
    with pytest.raises(GptcoreError, match="not UTF-8 text"):
        read_upload(str(latin), LIMITS, 32)
    with pytest.raises(ValueError, match="limit is 100 B"):
        read_upload(str(good), Limits(max_upload_bytes=100), 32)
    short = tmp_path / "short.txt"
    short.write_text("too short", encoding="utf-8")
    with pytest.raises(ValueError, match="needs at least"):
        read_upload(str(short), LIMITS, 32)
    with pytest.raises(ValueError, match="choose a .txt file"):
        read_upload(None, LIMITS, 32)


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> AppSettings:
    root = tmp_path_factory.mktemp("app")
    return AppSettings(checkpoints_dir=root / "checkpoints", runs_dir=root / "runs", ablations_dir=root / "abl")


@pytest.fixture()
def manager():
    """A training manager whose run is stopped (and its process ended) whatever the test did."""
    m = TrainingManager()
    yield m
    if m.status().active:
        m.stop(force=True)
        m.wait(WAIT)


def _wait_for(manager: TrainingManager, condition, timeout: float = 900.0):
    """The first status meeting ``condition``; the timeout only guards against a hang (a busy machine is slow)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = manager.status()
        if condition(st):
            return st
        time.sleep(0.05)
    raise AssertionError(f"timed out; last status: {manager.status()}")


def test_a_run_starts_reports_refuses_a_second_start_and_stops_keeping_the_best(settings, manager):
    # a step budget, not a time one: on a busy machine the run must not end by itself before it is stopped
    st = start_run(manager, settings, **QUICK_FORM, stop_mode=ITERATIONS, stop_value=LIMITS.max_train_iters,
                   corpus=SHAKESPEARE, upload=None, visitor="alice")
    assert st.state == "starting" and st.active
    with pytest.raises(RunInProgressError, match="a run is already in progress .*wait for it to finish or press Stop"):
        start_run(manager, settings, **QUICK_FORM, stop_mode=SECONDS, stop_value=60, corpus=SHAKESPEARE,
                  upload=None, visitor="alice")
    running = _wait_for(manager, lambda s: s.val_curve and len(s.train_curve) >= 2)
    assert running.state == "running" and running.tokens_per_sec > 0 and running.eta > 0
    frame = curve_frame(running)
    assert set(frame["curve"]) == {"train", "validation"} and frame["loss"].notna().all()
    # its snapshots replay while it trains (taken at step 0 and before the evaluation at step 50)
    registry = ModelRegistry(settings.checkpoints_dir, settings.runs_dir)
    assert LIVE in replay_sources(registry, manager)
    assert "**Step 50**" in show(registry, manager, LIVE, 1, 1, 1)[0]
    grown, known = follow_live(registry, manager, LIVE, 0, 1)  # the slider follows the run's new snapshots,
    assert known >= 2 and grown["maximum"] == grown["value"] == known - 1  # to the newest if it was on the last
    kept, _ = follow_live(registry, manager, LIVE, 0, 10**6)  # and stays where it was if it was not
    assert kept["value"] == 0 and kept["maximum"] >= 1
    # another visitor watches, is told when the trainer is free, and cannot stop it
    with pytest.raises(RunInProgressError, match="started by another visitor .*free again in about \\d+:\\d\\d"):
        start_run(manager, settings, **QUICK_FORM, stop_mode=SECONDS, stop_value=60, corpus=SHAKESPEARE,
                  upload=None, visitor="bob")
    for someone_else in ("bob", None):
        with pytest.raises(NotYourRunError, match="only the visitor who started this run can stop it"):
            manager.stop(someone_else)
    assert manager.owned_by("alice") and not manager.owned_by("bob")
    assert "Another visitor started this run" in status_markdown(manager.status(), mine=False)
    assert "Another visitor" not in status_markdown(manager.status(), mine=True)
    assert manager.status().active
    assert manager.stop("alice").state == "stopping"
    stopped_at = manager.status().step
    done = manager.wait(WAIT)
    assert done.state == "stopped", done.message
    assert done.step - stopped_at < 30  # halted within a few steps of the request, then saved
    assert "trained/" in done.message and "Stopped" in status_markdown(done)
    ck = load_checkpoint(done.out_dir)
    assert ck.metrics["status"] == "stopped" and ck.config.train.threads == 1
    assert registry.names() == [f"trained/{ck.path.name}"]  # a finished run appears in the pickers
    assert list(replay_sources(registry, manager)) == [f"trained/{ck.path.name}"]  # and in the replay's


def test_a_run_on_an_upload_that_fails_in_the_worker_is_reported(settings, manager):
    spec = TrainJobSpec(app_presets()[QUICK][1], settings.runs_dir / "bad", corpus_text="ab" * 30,
                        corpus_label="upload: tiny.txt", label="too short")
    manager.start(spec)
    done = manager.wait(WAIT)
    assert done.state == "failed" and "longer than block_size" in done.message
    assert "Failed" in status_markdown(done)


def test_an_uploaded_corpus_trains(settings, tmp_path, manager):
    upload = tmp_path / "mine.txt"
    upload.write_text("the quick brown fox jumps over the lazy dog. " * 200, encoding="utf-8")
    start_run(manager, settings, QUICK, 1, 2, 16, 16, 3e-3, ITERATIONS, 20, UPLOAD, str(upload))
    done = manager.wait(WAIT)
    assert done.state == "finished" and done.step == 20 and done.corpus == "upload: mine.txt"
    assert load_checkpoint(done.out_dir).tokenizer.vocab_size == len(set("the quick brown fox jumps over the lazy dog. "))


def test_a_prepared_corpus_is_offered_and_trains(tmp_path, corpus_text, manager):
    from demo.tabs.train import PREPARED, prepared_corpora
    from gptcore.prepare import PrepareConfig, prepare

    text = tmp_path / "text.txt"
    text.write_text(corpus_text[:200_000], encoding="utf-8")
    corpora = tmp_path / "corpora"
    prepare(PrepareConfig((str(text),), "bpe", 300, shard_tokens=20_000), corpora / "small", progress=False)
    (corpora / "unfinished").mkdir()
    (corpora / "unfinished" / "manifest.json").write_text('{"complete": false}')
    settings = AppSettings(checkpoints_dir=tmp_path / "c", runs_dir=tmp_path / "runs", ablations_dir=tmp_path / "a",
                           corpora_dir=corpora)
    assert prepared_corpora(corpora) == [PREPARED + "small"]
    start_run(manager, settings, QUICK, 1, 2, 16, 16, 3e-3, ITERATIONS, 20, PREPARED + "small", None)
    done = manager.wait(WAIT)
    assert done.state == "finished", done.message
    ck = load_checkpoint(done.out_dir)
    assert ck.tokenizer.type_name == "bpe" and ck.metrics["corpus"] == str(corpora / "small")
    with pytest.raises(ValueError, match="corpus must be one of"):
        start_run(manager, settings, QUICK, 1, 2, 16, 16, 3e-3, ITERATIONS, 20, PREPARED + "../../etc", None)


def test_train_start_in_the_ui_turns_errors_into_messages(settings):
    from demo.app import build_app

    demo = build_app(settings, preload=False)
    start = next(fn for fn in demo.fns.values() if fn.api_name == "train_start")
    with pytest.raises(gr.Error, match="n_embd \\(64\\) must be divisible by n_head \\(3\\)"):
        start.fn(QUICK, 2, 3, 64, 64, 3e-3, SECONDS, 60, SHAKESPEARE, None)


def test_a_crowd_waits_in_a_bounded_queue_and_the_views_share_their_slots(settings):
    """Past the queue's size a visitor is told at once that it is full; the Attention and Inside views (buttons
    and APIs alike) take turns in one pair of slots, generations run one per two cores, and Stop and the
    run's status skip the queue."""
    import os

    from demo.app import build_app

    demo = build_app(settings, preload=False)
    fns = {fn.api_name: fn for fn in demo.fns.values()}
    assert demo._queue.max_size == settings.limits.queue_size
    views = [fns[name] for name in ("attention", "predictions", "logit_lens", "heads_off", "embeddings",
                                    "show_attention", "predictions_view", "heads_off_view_2")]
    assert {(fn.concurrency_id, fn.concurrency_limit) for fn in views} == {("model-views", settings.limits.view_concurrency)}
    assert fns["generate"].concurrency_limit == max(1, (os.cpu_count() or 2) // 2)
    assert not fns["train_stop"].queue and not fns["train_status"].queue  # a full queue never refuses a Stop


@pytest.mark.parametrize("name", ["n_layer", "n_head", "n_embd", "block_size"])
def test_each_size_one_past_its_maximum_is_refused_by_name(name):
    form = dict(QUICK_FORM, n_head=1, n_embd=64, stop_mode=SECONDS, stop_value=60)
    form[name] = getattr(LIMITS, f"max_{name}") + 1  # n_head=1 and n_embd=64 divide anything else evenly
    with pytest.raises(ValueError, match=f"{name} must be a whole number between"):
        build_config(LIMITS, **form)
    form[name] = getattr(LIMITS, f"max_{name}")
    if name == "n_head":
        form["n_embd"] = LIMITS.max_n_head * 4
    assert getattr(build_config(LIMITS, **form).model, name) == form[name]  # the maximum itself is taken


def test_a_stopping_run_is_ended_for_using_its_cpu_grace_not_for_being_starved_of_cpu():
    """At the lowest priority on a busy machine a run saves slowly: it is terminated only after using its
    grace in CPU time (or, where that cannot be read, in wall-clock time), or after the longest a run may take."""
    import os

    from demo.server.training_job import STOP_GRACE_CPU_S, STOP_GRACE_WALL_S, _cpu_seconds, stop_overdue

    assert not stop_overdue(10.0 + 1, 10.0, wall_since_stop=5 * STOP_GRACE_CPU_S)  # starved, not stuck
    assert stop_overdue(10.0 + STOP_GRACE_CPU_S + 1, 10.0, wall_since_stop=STOP_GRACE_CPU_S + 1)  # spinning
    assert stop_overdue(None, None, wall_since_stop=STOP_GRACE_CPU_S + 1)
    assert not stop_overdue(None, None, wall_since_stop=STOP_GRACE_CPU_S - 1)
    assert stop_overdue(10.0, 10.0, wall_since_stop=STOP_GRACE_WALL_S + 1)
    spent = _cpu_seconds(os.getpid())
    sum(i * i for i in range(2_000_000))  # some CPU time of this process's own
    assert spent is not None and _cpu_seconds(os.getpid()) > spent
