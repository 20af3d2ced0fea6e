"""Keeping one seed's model per ablation arm: where it goes, what it holds, and that nothing is trained twice."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from gptcore.checkpoint import load_checkpoint, weights_file
from gptcore.evaluate import split_loss
from gptcore.experiments import arm_models
from gptcore.experiments.ablate import BASE_SEED, Arm, Study, arm_config, load_results, run_study
from tests.test_ablate import TINY, TINY_MODEL, tiny_budget

pytestmark = pytest.mark.slow  # trains tiny studies and keeps their models: started first, beside the rest


def _model_dirs(out):
    return sorted(p.name for p in (out / arm_models.MODELS_DIR).iterdir())


@pytest.fixture(scope="module")
def recorded_then_kept(tmp_path_factory, corpus):
    """A study recorded without its models, then asked for them."""
    out = tmp_path_factory.mktemp("ablations")
    run_study(TINY, corpus, out, seeds=2, budget=tiny_budget(), command="pytest", quiet=True)
    before = (out / "tiny-heads.json").read_bytes()
    report = run_study(TINY, corpus, out, seeds=1, budget=tiny_budget(), command="pytest --keep-models",
                       quiet=True, keep_models=True)
    return out, before, report


def test_a_recorded_study_trains_its_first_seeds_again_to_keep_them(recorded_then_kept, corpus):
    out, before, report = recorded_then_kept
    assert (report.trained, report.models_trained, report.models_kept) == (0, 2, 2)
    assert (out / "tiny-heads.json").read_bytes() == before  # the record of the runs is left as it was
    assert _model_dirs(out) == ["tiny-heads-one", "tiny-heads-two"]
    assert not (out / ".work").exists()
    results = load_results(out / "tiny-heads.json")
    listed = arm_models.arm_models(out, results, BASE_SEED)
    assert [(m.arm, m.label, m.seed) for m in listed] == [("two", "2 heads", BASE_SEED), ("one", "1 head", BASE_SEED)]
    for arm, model in zip(results["arms"], listed):
        recorded = next(r for r in arm["runs"] if r["seed"] == BASE_SEED)
        directory = out / "models" / f"tiny-heads-{arm['name']}"
        assert model.path == directory and model.missing == ""
        kept = load_checkpoint(directory)
        assert (model.val_loss, model.recorded_val_loss) == (kept.metrics["val_loss"], recorded["val_loss"])
        assert kept.config.model.n_head == arm["value"] and kept.config.train.seed == BASE_SEED
        # trained again on the same machine: the same run, to the last bit
        assert kept.metrics["recorded_val_loss"] == recorded["val_loss"] == kept.metrics["trained_val_loss"]
        # the loss said for the model is that of the stored float16 weights
        assert kept.metrics["val_loss"] == split_loss(kept.model, corpus.val, kept.config.model.block_size)
        assert kept.metrics["val_nats_per_char"] == pytest.approx(kept.metrics["val_loss"], rel=1e-12)
        assert kept.metrics["val_loss"] == pytest.approx(recorded["val_loss"], abs=2e-3)
        assert kept.metrics["seed"] == BASE_SEED and kept.metrics["kept_by"] == "pytest --keep-models"
        with safe_open(str(weights_file(directory)), "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}


def test_kept_models_are_not_trained_again(recorded_then_kept, corpus, capsys):
    out, _, _ = recorded_then_kept
    again = run_study(TINY, corpus, out, seeds=2, budget=tiny_budget(), command="pytest", keep_models=True)
    assert (again.trained, again.models_trained, again.models_kept) == (0, 0, 0)
    estimate = capsys.readouterr().out.splitlines()[0]
    assert estimate.startswith("tiny-heads: 4 runs (4 already done, 0 reusable from other studies, 0 to train; ")
    twin = Study("tiny-twin", "the two-head arm in another study", "", (TINY.arms[0],), base_model=TINY_MODEL)
    shared = run_study(twin, corpus, out, seeds=1, budget=tiny_budget(), quiet=True, keep_models=True)
    assert (shared.trained, shared.reused, shared.models_trained) == (0, 1, 0)  # one model for both studies
    assert _model_dirs(out) == ["tiny-heads-one", "tiny-heads-two"]
    assert arm_models.arm_models(out, shared.results, BASE_SEED)[0].path == out / "models" / "tiny-heads-two"


def test_a_study_trained_with_keep_models_keeps_the_first_seed_as_it_trains(tmp_path, corpus):
    report = run_study(TINY, corpus, tmp_path, seeds=2, budget=tiny_budget(), command="pytest", quiet=True,
                       keep_models=True)
    assert (report.trained, report.models_trained, report.models_kept) == (4, 0, 2)
    results = load_results(tmp_path / "tiny-heads.json")
    for arm in results["arms"]:
        kept = load_checkpoint(arm_models.model_dir(tmp_path, "tiny-heads", arm["name"]))
        assert kept.metrics["trained_val_loss"] == arm["runs"][0]["val_loss"] == kept.metrics["recorded_val_loss"]


def _largest_tensor_bytes(config) -> int:
    from gptcore.models import build_model

    with torch.device("meta"):
        return max(t.numel() * 2 for t in build_model(config.model).state_dict().values())


def test_an_arm_bigger_than_a_file_is_kept_in_several(tmp_path, corpus, monkeypatch):
    from gptcore.checkpoint import WEIGHT_PARTS, weights_files
    from gptcore.storage import HEADER_ROOM

    config = arm_config(TINY, TINY.arms[0], tiny_budget(), BASE_SEED, 65)
    limit = HEADER_ROOM + max(_largest_tensor_bytes(config), arm_models.kept_bytes(config) // 3)
    monkeypatch.setattr(arm_models, "MAX_FILE_BYTES", limit)
    assert arm_models.too_big_to_keep(config) is None
    study = Study("tiny-parts", "two heads", "", (TINY.arms[0],), base_model=TINY_MODEL)
    report = run_study(study, corpus, tmp_path, seeds=1, budget=tiny_budget(), command="pytest", quiet=True,
                       keep_models=True)
    directory = arm_models.model_dir(tmp_path, "tiny-parts", "two")
    files = weights_files(directory)
    assert report.models_kept == 1 and len(files) >= 3 and files[1].name == WEIGHT_PARTS[0]
    assert all(f.stat().st_size < limit for f in files)
    kept = load_checkpoint(directory)
    assert kept.metrics["trained_val_loss"] == report.results["arms"][0]["runs"][0]["val_loss"]
    assert kept.metrics["val_loss"] == split_loss(kept.model, corpus.val, kept.config.model.block_size)


def test_an_arm_too_big_to_keep_is_named_and_left(tmp_path, corpus, monkeypatch, capsys):
    big = Arm("wide", "wide model", 64, {"n_embd": 64})
    study = Study("tiny-width", "width", "", (TINY.arms[0], big), base_model=TINY_MODEL)
    largest = _largest_tensor_bytes(arm_config(study, TINY.arms[0], tiny_budget(), BASE_SEED, 65))
    monkeypatch.setattr(arm_models, "MAX_FILE_BYTES", largest + (1 << 16))  # the wide arm's tensors are larger
    report = run_study(study, corpus, tmp_path, seeds=1, budget=tiny_budget(), command="pytest",
                       keep_models=True)
    assert report.models_kept == 1 and _model_dirs(tmp_path) == ["tiny-width-two"]
    out = capsys.readouterr().out
    assert "tiny-width: the wide model arm's model is not kept: in float16, " in out and " alone is " in out
    listed = arm_models.arm_models(tmp_path, report.results, BASE_SEED)
    assert listed[0].path is not None and listed[1].path is None
    assert listed[1].missing.startswith("not kept: in float16, ")
    assert arm_models.arm_models(tmp_path, report.results, BASE_SEED + 1)[0].missing == (
        "its first seed has not been trained yet")


def test_kept_weights_stay_under_the_file_limit(monkeypatch):
    """Every arm of the 2,000-step studies can be kept: the 8-layer one (12.8 MB in float16) in two files."""
    from gptcore.checkpoint import MAX_WEIGHT_FILES
    from gptcore.experiments.ablate import STUDIES, default_budget
    from gptcore.models import build_model
    from gptcore.storage import safetensors_parts

    study = STUDIES["depth"]
    eight = arm_config(study, study.arms[3], default_budget(2000), BASE_SEED, 65)
    for arm, files in ((study.arms[2], 1), (study.arms[3], 2)):  # 6 layers, 8 layers
        config = arm_config(study, arm, default_budget(2000), BASE_SEED, 65)
        assert arm_models.too_big_to_keep(config) is None
        parts = safetensors_parts(build_model(config.model).state_dict(), torch.float16, arm_models.MAX_FILE_BYTES)
        assert len(parts) == files and all(len(part) < arm_models.MAX_FILE_BYTES for part in parts)
    monkeypatch.setattr(arm_models, "MAX_FILE_BYTES", 600_000)  # 8 layers in files this small: too many
    reason = arm_models.too_big_to_keep(eight)
    assert reason.startswith("its weights would take ") and reason.endswith(
        f"files of under 600.0 KB, more than a checkpoint has ({MAX_WEIGHT_FILES})")
