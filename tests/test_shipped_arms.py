"""The ablation arms' models shipped beside the studies (checkpoints/ablations-*/models/): one per arm, each the
study's own run of its first seed. A module of its own, so that the test runner can place it beside the rest."""

from pathlib import Path

import pytest

from gptcore import checkpoint as ckpt

pytestmark = pytest.mark.slow  # whole-split evaluations: started first, beside the rest


KEPT_ARMS = Path(__file__).resolve().parent.parent / "checkpoints" / "ablations-2000"


def test_the_shipped_arms_models_are_those_the_study_recorded(corpus):
    """Every arm model shipped beside the studies fits a Space, gives the loss its metrics say (of its float16
    weights), and is the study's own run of that seed: trained again, it ended at the recorded loss."""
    from gptcore.evaluate import split_loss
    from gptcore.experiments.ablate import BASE_SEED
    from gptcore.experiments.ablation_results import load_results
    from gptcore.experiments.arm_models import arm_models

    heads = arm_models(KEPT_ARMS, load_results(KEPT_ARMS / "heads.json"), BASE_SEED)
    assert [m.path.name for m in heads if m.path] == ["heads-1", "heads-2", "heads-4", "heads-8"]
    depth = arm_models(KEPT_ARMS, load_results(KEPT_ARMS / "depth.json"), BASE_SEED)
    assert [m.path.name for m in depth] == ["depth-2", "heads-4", "depth-6", "depth-8"]  # heads-4: the base
    # model, kept once for the studies that share it; depth-8's weights are 12.8 MB in float16: two files
    assert [f.name for f in ckpt.weights_files(depth[3].path)] == ["model.safetensors", "model-2.safetensors"]
    posemb = arm_models(KEPT_ARMS, load_results(KEPT_ARMS / "posemb.json"), BASE_SEED)
    assert [m.path.name for m in posemb] == ["heads-4", "posemb-none", "posemb-rope"]
    baseline = arm_models(KEPT_ARMS, load_results(KEPT_ARMS / "baseline.json"), BASE_SEED)
    assert [(m.path.name, m.arch) for m in baseline] == [("heads-4", "gpt"), ("baseline-bigram", "bigram"),
                                                         ("baseline-bigram-lr0.01", "bigram")]
    residual = arm_models(KEPT_ARMS.parent / "ablations-600", load_results(KEPT_ARMS.parent / "ablations-600" /
                                                                         "residual.json"), BASE_SEED)
    assert [m.path.name for m in residual] == ["residual-on", "residual-off"]
    norm = arm_models(KEPT_ARMS.parent / "ablations-600", load_results(KEPT_ARMS.parent / "ablations-600" /
                                                                     "norm.json"), BASE_SEED)
    assert sorted(m.path.name for m in norm) == sorted(f"norm-{where}-lr{lr}" for where in ("pre", "post")
                                                       for lr in ("0.001", "0.003", "0.01"))
    # the whole-split loss is evaluated again for one model of each kind (the smallest GPT, a bigram, a
    # post-norm model); every model's files, depth-8's two included, are checked against their checksums as
    # it loads, and its metrics' loss was evaluated from those very bytes when it was saved
    evaluated = {"depth-2", "baseline-bigram", "norm-post-lr0.003"}
    for model in heads + depth[:1] + depth[2:] + posemb[1:] + baseline[1:] + residual + norm:
        assert all(f.stat().st_size < 10_000_000 for f in ckpt.checkpoint_files(model.path))
        ck = ckpt.load_checkpoint(model.path)
        if model.path.name in evaluated:
            assert ck.metrics["val_loss"] == pytest.approx(
                split_loss(ck.model, corpus.val, ck.config.model.block_size), abs=1e-6)
        assert ck.metrics["trained_val_loss"] == pytest.approx(model.recorded_val_loss, abs=1e-9)
        assert ck.metrics["val_loss"] == pytest.approx(model.recorded_val_loss, abs=1e-3)  # float16 rounding
        assert ck.config.train.seed == BASE_SEED and ck.config.train.save_dtype == "float16"
