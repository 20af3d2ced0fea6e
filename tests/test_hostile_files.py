"""Files and arguments built to break gptcore, round two: every file it reads is bounded (size, depth, the
values a walk may visit), every size is checked before anything is allocated, and every command checks
its output before any work and never overwrites a file it did not write. Each case gives one clear line
(CLI) or a GptcoreError (Python API), never a traceback, a hang or lost data."""

from __future__ import annotations

import json
import pickle
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from gptcore.checkpoint import load_checkpoint, save_checkpoint
from gptcore.config import RunConfig
from gptcore.errors import CheckpointError
from gptcore.inference.draft import NgramDraft
from gptcore.interop.gpt2 import read_gpt2_vocab
from gptcore.interop.nanogpt import import_nanogpt, read_meta
from gptcore.memory import estimate_bytes
from gptcore.prepare import PrepareConfig, prepare
from gptcore.storage import file_sha256, read_json, tensors_digest
from gptcore.tokenizers import BPETokenizer, load_tokenizer
from tests.test_hostile import SHIPPED, copy_shipped, one_error_line

ROOT = Path(__file__).resolve().parents[1]
NANOGPT = ROOT.parent / "shared" / "nanogpt" / "char-tiny"
DEEP = "[" * 200_000 + "]" * 200_000
UNWRITABLE = Path("/sys/gptcore-test-out")  # mkdir there fails even for root
HANG = 120  # seconds: far more than any case needs; a bound walk or pattern would never finish


def finishes(fn, *args):
    """``fn(*args)``, failing the test instead of hanging it when a walk has no bound (the walk goes on in a
    daemon thread, which does not keep the test run from ending)."""
    outcome: dict = {}

    def call():
        try:
            outcome["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread below
            outcome["error"] = e

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(HANG)
    assert not thread.is_alive(), f"{fn.__name__} did not finish within {HANG} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def laughs(width: int = 10, depth: int = 18) -> list:
    """A list of ``width`` references to a list of ``width`` references ... : tiny pickled, width**depth walked."""
    value: list = ["lol"]
    for _ in range(depth):
        value = [value] * width
    return value


@pytest.fixture()
def checkpoint(tmp_path) -> Path:
    """The shipped model saved as every checkpoint is now (safetensors and a manifest)."""
    ck = load_checkpoint(SHIPPED)
    save_checkpoint(tmp_path / "ck", ck.model, ck.config, ck.tokenizer, ck.metrics)
    return tmp_path / "ck"


# 1. JSON nested 200,000 levels deep, in every JSON file gptcore reads ---------------------------------------

@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", "metrics.json", "manifest.json"])
def test_deep_json_in_a_checkpoint_is_one_line(checkpoint, capsys, name):
    if name != "manifest.json":
        (checkpoint / "manifest.json").unlink()  # else the manifest's checksum refuses the file first
    (checkpoint / name).write_text(DEEP)
    with pytest.raises(CheckpointError, match=f"{name} is nested more than"):
        load_checkpoint(checkpoint)
    assert name in one_error_line(capsys, ["eval", "--checkpoint", checkpoint])
    assert name in one_error_line(capsys, ["sample", "--checkpoint", checkpoint])


def test_deep_json_in_a_tokenizer_a_results_file_and_gpt2s_vocabulary(tmp_path, capsys):
    (tmp_path / "tokenizer.json").write_text(DEEP)
    with pytest.raises(CheckpointError, match="nested"):
        load_tokenizer(tmp_path / "tokenizer.json")
    (tmp_path / "encoder.json").write_text(DEEP)
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\n")
    with pytest.raises(CheckpointError, match="encoder.json is nested"):
        read_gpt2_vocab(tmp_path)
    (tmp_path / "heads.json").write_text(DEEP)
    assert "nested" in one_error_line(capsys, ["ablate", "--study", "heads", "--summary", "--out", tmp_path])
    with pytest.raises(CheckpointError, match="nested more than"):
        read_json_path = tmp_path / "shallow.json"
        read_json_path.write_text("[" * 40 + "]" * 40)  # parses, but deeper than any file of gptcore's
        read_json(read_json_path)


def test_json_files_are_bounded_in_size(tmp_path):
    (tmp_path / "big.json").write_text('{"a": "' + "x" * 2000 + '"}')
    with pytest.raises(CheckpointError, match="larger than 1,000 bytes"):
        read_json(tmp_path / "big.json", max_bytes=1000)
    with pytest.raises(CheckpointError, match="not a regular file"):
        read_json(tmp_path)


def test_deep_json_in_a_prepared_corpus_manifest(tmp_path, capsys, corpus_text):
    (tmp_path / "c.txt").write_text(corpus_text[:60_000])
    prepare(PrepareConfig((str(tmp_path / "c.txt"),), "char"), tmp_path / "p", progress=False)
    (tmp_path / "p" / "manifest.json").write_text(DEEP)
    line = one_error_line(capsys, ["eval", "--checkpoint", SHIPPED, "--data", tmp_path / "p"])
    assert "manifest.json is nested" in line


# 2. Sizes too large for the memory estimate, and settings that multiply memory ------------------------------

def test_sizes_past_any_float_are_refused_by_name(checkpoint, capsys, tmp_path):
    config = json.loads((checkpoint / "config.json").read_text())
    config["model"]["n_layer"] = 10**400
    (checkpoint / "manifest.json").unlink()
    (checkpoint / "config.json").write_text(json.dumps(config))
    assert "n_layer" in one_error_line(capsys, ["eval", "--checkpoint", checkpoint])
    line = one_error_line(capsys, ["train", "--preset", "tiny", "--out", tmp_path / "o",
                                   "--set", "n_embd=1" + "0" * 160, "--set", "n_head=1"])
    assert "n_embd" in line and not (tmp_path / "o").exists()


def test_grad_accum_is_part_of_the_memory_estimate():
    run = RunConfig()
    more = run.with_overrides({"grad_accum": 1000})
    assert estimate_bytes(more.model, more.train) - estimate_bytes(run.model, run.train) == \
        999 * 2 * 8 * run.train.batch_size * run.model.block_size


# 3. A hostile BPE tokenizer.json ----------------------------------------------------------------------------

def bpe_file(tmp_path: Path, **changes) -> Path:
    data = {**BPETokenizer([(104, 101)]).to_dict(), **changes}
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("pattern", ["(", "[a-z]+", "", r"( ?\w+)|\s+|.", "(?:a+)+$", 5])
def test_only_known_splitting_patterns_load(tmp_path, pattern):
    with pytest.raises(CheckpointError, match="splitting pattern"):
        finishes(load_tokenizer, bpe_file(tmp_path, pattern=pattern))


def test_a_pattern_that_backtracks_forever_is_refused_before_any_prompt(tmp_path):
    with pytest.raises(ValueError, match="splitting pattern"):
        finishes(BPETokenizer, [], "(?:a+)+$")
    with pytest.raises(ValueError, match="splitting pattern"):
        finishes(BPETokenizer.train, "a" * 40 + "!", 300, "(?:a+)+$")


@pytest.mark.parametrize("changes, message", [
    ({"merges": [[255, 255]] + [[256 + i, 256 + i] for i in range(40)]}, "bytes in all"),
    ({"merges": [[0, 1]] + [[256 + i, 0] for i in range(100_000)]}, "bytes in all"),
    ({"vocab_size": 10**12}, "vocab_size"),
    ({"vocab_size": 1e300}, "integers"),
    ({"merges": [[0, 1.5]]}, "integers"),
    ({"merges": [[0]]}, "pair of ids"),
    ({"byte_ids": list(range(255)) + [10**30]}, "byte_ids"),
])
def test_merges_and_sizes_that_would_exhaust_memory(tmp_path, changes, message):
    with pytest.raises(CheckpointError, match=message):
        finishes(load_tokenizer, bpe_file(tmp_path, **changes))


def test_a_hostile_tokenizer_is_one_line_from_prepare_eval_and_sample(tmp_path, checkpoint, capsys, corpus_text):
    hostile = bpe_file(tmp_path, pattern="[a-z]+")
    (tmp_path / "c.txt").write_text(corpus_text[:30_000])
    line = one_error_line(capsys, ["prepare", "--input", tmp_path / "c.txt", "--tokenizer", hostile,
                                   "--out", tmp_path / "p", "--quiet"])
    assert "splitting pattern" in line
    (checkpoint / "manifest.json").unlink()
    shutil.copy(hostile, checkpoint / "tokenizer.json")
    assert "splitting pattern" in one_error_line(capsys, ["eval", "--checkpoint", checkpoint])
    assert "splitting pattern" in one_error_line(capsys, ["sample", "--checkpoint", checkpoint])


# 4. import-nanogpt --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("width, depth, message", [(10, 18, "nested more than"), (1000, 5, "more than .* values")])
def test_a_billion_laughs_meta_pkl_is_refused_quickly(tmp_path, width, depth, message):
    payload = pickle.dumps({"itos": {0: "a"}, "vocab_size": laughs(width, depth)})
    assert len(payload) < 2000 + 10 * width
    (tmp_path / "meta.pkl").write_bytes(payload)
    with pytest.raises(CheckpointError, match=message):
        finishes(read_meta, tmp_path / "meta.pkl")


@pytest.fixture(scope="module")
def nanogpt_raw() -> dict:
    return torch.load(NANOGPT / "ckpt.pt", map_location="cpu", weights_only=True)


def nanogpt_variant(tmp_path: Path, raw: dict, weights: bool = True, **args) -> Path:
    variant = {**raw, "model_args": {**raw["model_args"], **args}, "model": raw["model"] if weights else {}}
    variant.pop("optimizer", None)
    torch.save(variant, tmp_path / "ckpt.pt")
    shutil.copy(NANOGPT / "meta.pkl", tmp_path / "meta.pkl")
    return tmp_path / "ckpt.pt"


@pytest.mark.parametrize("args", [{"n_embd": 65536, "n_layer": 64}, {"block_size": 10**9}, {"n_layer": 1_000_000}])
def test_model_args_too_large_are_refused_before_allocating(tmp_path, capsys, nanogpt_raw, args):
    path = nanogpt_variant(tmp_path, nanogpt_raw, weights=False, **args)
    with pytest.raises(CheckpointError, match="too large to load"):
        import_nanogpt(path, tmp_path / "out")
    assert "too large" in one_error_line(capsys, ["import-nanogpt", path, "--out", tmp_path / "out2"])


def test_a_billion_laughs_in_model_args_is_refused_with_a_short_message(tmp_path, nanogpt_raw):
    path = nanogpt_variant(tmp_path, nanogpt_raw, vocab_size=laughs(12, 18))
    with pytest.raises(CheckpointError) as error:
        finishes(import_nanogpt, path, tmp_path / "out")
    assert len(str(error.value)) < 500


def test_nanogpt_weights_holding_nan_are_refused(tmp_path, nanogpt_raw):
    model = dict(nanogpt_raw["model"])
    model["lm_head.weight"] = torch.full_like(model["lm_head.weight"], float("nan"))
    path = nanogpt_variant(tmp_path, {**nanogpt_raw, "model": model})
    with pytest.raises(CheckpointError, match="NaN or infinite numbers in lm_head.weight"):
        import_nanogpt(path, tmp_path / "out")


# 5, 6, 7. Outputs: checked before any work, and never a file gptcore did not write ---------------------------

@pytest.mark.parametrize("command", [
    ["train", "--preset", "tiny"],
    ["prepare", "--input", "CORPUS", "--tokenizer", "char", "--quiet"],
    ["bench", "--quick", "--repeats", "1"],
    ["ablate", "--study", "heads", "--max-iters", "2", "--seeds", "1", "--quiet"],
    ["ablate", "--study", "heads", "--step-cost"],
])
@pytest.mark.parametrize("where", [UNWRITABLE, Path("/proc/gptcore-test-out")])
def test_an_unwritable_output_is_refused_before_any_work(tmp_path, capsys, corpus_text, command, where):
    (tmp_path / "c.txt").write_text(corpus_text[:30_000])
    args = [str(tmp_path / "c.txt") if a == "CORPUS" else a for a in command]
    out = where / "results.json" if command[0] == "bench" else where
    line = one_error_line(capsys, [*args, "--out", out])
    assert f"--out {out}" in line and "cannot be written" in line


def test_an_existing_directory_that_cannot_be_written_is_refused(capsys, corpus_text, tmp_path):
    (tmp_path / "c.txt").write_text(corpus_text[:30_000])
    line = one_error_line(capsys, ["train", "--preset", "tiny", "--data", tmp_path / "c.txt", "--out", "/sys/kernel"])
    assert "--out /sys/kernel cannot be written" in line


def test_draft_checks_its_checkpoint_can_be_written_before_counting(tmp_path, capsys, monkeypatch):
    from gptcore import storage

    ck = copy_shipped(tmp_path)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(storage.tempfile, "mkdtemp", refuse)
    line = one_error_line(capsys, ["draft", "--checkpoint", ck])
    assert f"--checkpoint {ck} cannot be written: Permission denied" in line


@pytest.mark.parametrize("out", ["file", "file/below"])
def test_ablate_out_a_file_or_below_one(tmp_path, capsys, out):
    (tmp_path / "file").write_text("mine")
    line = one_error_line(capsys, ["ablate", "--study", "heads", "--max-iters", "2", "--seeds", "1",
                                   "--out", tmp_path / out])
    assert "not a directory" in line and (tmp_path / "file").read_text() == "mine"


@pytest.mark.parametrize("name", ["notes.txt", "tokenizer.json", "train-00000.bin", "manifest.json"])
def test_prepare_never_overwrites_a_users_file(tmp_path, capsys, corpus_text, name):
    (tmp_path / "c.txt").write_text(corpus_text[:30_000])
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text("the user's own")
    line = one_error_line(capsys, ["prepare", "--input", tmp_path / "c.txt", "--tokenizer", "char",
                                   "--out", out, "--quiet"])
    assert name in line
    assert sorted(p.name for p in out.iterdir()) == [name] and (out / name).read_text() == "the user's own"


def test_prepare_continues_its_own_run_but_not_beside_a_users_file(tmp_path, capsys, corpus_text):
    (tmp_path / "c.txt").write_text(corpus_text[:30_000])
    args = ["prepare", "--input", str(tmp_path / "c.txt"), "--tokenizer", "char", "--out", str(tmp_path / "p"),
            "--quiet"]
    from gptcore.cli import main

    assert main(args) == 0 and main(args) == 0  # a rerun of the same command finds its own run
    (tmp_path / "p" / "notes.txt").write_text("mine")
    assert "holds notes.txt, which gptcore prepare did not write" in one_error_line(capsys, args)


@pytest.mark.parametrize("extra, message", [(["--bpe-sample-mb", "inf"], "--bpe-sample-mb"),
                                            (["--bpe-sample-mb", "0"], "--bpe-sample-mb"),
                                            (["--tokenizer", "DIR"], "is a directory")])
def test_other_prepare_arguments(tmp_path, capsys, corpus_text, extra, message):
    (tmp_path / "c.txt").write_text(corpus_text[:30_000])
    extra = [str(tmp_path) if a == "DIR" else a for a in extra]
    line = one_error_line(capsys, ["prepare", "--input", tmp_path / "c.txt", *extra, "--out", tmp_path / "p"])
    assert message in line and not (tmp_path / "p").exists()


# 8. A damaged prepared corpus -----------------------------------------------------------------------------------

@pytest.fixture()
def prepared(tmp_path, corpus_text) -> Path:
    (tmp_path / "c.txt").write_text(corpus_text[:60_000])
    prepare(PrepareConfig((str(tmp_path / "c.txt"),), "char"), tmp_path / "p", progress=False)
    return tmp_path / "p"


def edit_manifest(directory: Path, change) -> None:
    manifest = json.loads((directory / "manifest.json").read_text())
    change(manifest)
    (directory / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("field, value, message", [("tokens", -5, "counts are integers"),
                                                   ("tokens", 1.5, "counts are integers"),
                                                   ("file", "../../c.txt", "not a name gptcore prepare writes"),
                                                   ("split", "test", "not train or val")])
def test_a_manifest_with_impossible_shard_entries(prepared, capsys, tmp_path, field, value, message):
    edit_manifest(prepared, lambda m: m["shards"][0].update({field: value}))
    line = one_error_line(capsys, ["train", "--preset", "tiny", "--data", prepared, "--out", tmp_path / "o"])
    assert message in line and not (tmp_path / "o").exists()


def test_manifest_totals_must_be_the_sums_of_its_shards(prepared, capsys):
    edit_manifest(prepared, lambda m: m["tokens"].update(train=m["tokens"]["train"] + 1))
    assert "not the sums" in one_error_line(capsys, ["eval", "--checkpoint", SHIPPED, "--data", prepared])


def test_token_ids_outside_the_vocabulary_are_refused_with_the_numbers(prepared, capsys, tmp_path):
    manifest = json.loads((prepared / "manifest.json").read_text())
    val = next(s for s in manifest["shards"] if s["split"] == "val")
    ids = np.fromfile(prepared / val["file"], dtype="<u2")
    ids[3] = 60_000
    ids.tofile(prepared / val["file"])

    def forge(m):  # the checksum and recorded maximum updated to match: only the ids themselves tell
        shard = next(s for s in m["shards"] if s["file"] == val["file"])
        shard.update(sha256=file_sha256(prepared / val["file"]), max_id=60_000)

    edit_manifest(prepared, forge)
    vocab = manifest["vocab_size"]
    for args in (["train", "--preset", "tiny", "--data", prepared, "--out", tmp_path / "o"],
                 ["eval", "--checkpoint", SHIPPED, "--data", prepared]):
        line = one_error_line(capsys, args)
        assert "token id 60,000" in line and f"{vocab} tokens" in line


def test_prepare_records_each_shards_largest_id(prepared):
    manifest = json.loads((prepared / "manifest.json").read_text())
    for shard in manifest["shards"]:
        assert shard["max_id"] == int(np.fromfile(prepared / shard["file"], dtype="<u2").max())


# 9. Weights that load but cannot be used -------------------------------------------------------------------------

def forge_weights(checkpoint: Path, name: str, value) -> None:
    """Set one tensor of a checkpoint and update every checksum, as a careful attacker would."""
    from safetensors.torch import load_file, save_file

    path = checkpoint / "model.safetensors"
    tensors = load_file(path)
    tensors[name] = value(tensors[name])
    save_file(tensors, path, metadata={"format": "gptcore", "sha256": tensors_digest(tensors)})
    (checkpoint / "manifest.json").unlink()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_weights_holding_nan_or_infinity_are_refused_naming_the_tensor(checkpoint, capsys, value):
    forge_weights(checkpoint, "lm_head.weight", lambda t: t.clone().fill_(value))
    with pytest.raises(CheckpointError, match="NaN or infinite numbers in lm_head.weight"):
        load_checkpoint(checkpoint)
    assert "lm_head.weight" in one_error_line(capsys, ["sample", "--checkpoint", checkpoint, "--temperature", "0.8"])
    assert "lm_head.weight" in one_error_line(capsys, ["eval", "--checkpoint", checkpoint])


def test_a_tied_config_beside_untied_weights_is_refused(tmp_path):
    ck = copy_shipped(tmp_path)  # an untied checkpoint of the old format (model.pt)
    config = json.loads((ck / "config.json").read_text())
    config["model"]["tie_embeddings"] = True
    (ck / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="tie_embeddings"):
        load_checkpoint(ck)


def test_a_draft_guessing_outside_the_vocabulary_is_refused(tmp_path):
    checkpoint = copy_shipped(tmp_path)
    draft = load_checkpoint(checkpoint).draft
    tensors = draft.tensors()
    tensors["guesses"] = tensors["guesses"].clone()
    tensors["guesses"][0] = 10_000
    from gptcore.storage import save_tensors

    save_tensors(checkpoint / "draft.pt", tensors)
    with pytest.raises(CheckpointError, match="guesses must be token ids below 65"):
        NgramDraft.load(checkpoint / "draft.pt")


# 10, 11. ablate's counts, and a device this machine lacks ----------------------------------------------------

@pytest.mark.parametrize("args, message", [(["--max-seeds", "-1"], "--max-seeds"), (["--max-seeds", "0"], "--max-seeds"),
                                           (["--step-cost", "--threads", "-1"], "--threads"),
                                           (["--threads", "0"], "--threads")])
def test_ablate_counts_are_checked(tmp_path, capsys, args, message):
    line = one_error_line(capsys, ["ablate", "--study", "heads", "--out", tmp_path, *args])
    assert message in line and not list(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA: this one has a GPU")
def test_a_missing_device_is_not_blamed_on_the_checkpoint(capsys):
    line = one_error_line(capsys, ["eval", "--checkpoint", SHIPPED, "--device", "cuda"])
    assert "cuda" in line and "config.json" not in line



def test_a_training_state_with_a_billion_laughs_history_is_refused(tmp_path, capsys, corpus_text):
    from gptcore.cli import main

    (tmp_path / "c.txt").write_text(corpus_text[:30_000])
    args = ["train", "--preset", "tiny", "--data", str(tmp_path / "c.txt"), "--out", str(tmp_path / "o"), "--quiet",
            "--max-iters", "10", "--set", "eval_interval=5", "--set", "sample_interval=0"]
    assert main(args) == 0
    state = torch.load(tmp_path / "o" / "train_state.pt", weights_only=True)
    torch.save({**state, "history": laughs()}, tmp_path / "o" / "train_state.pt")
    line = finishes(one_error_line, capsys, [*args, "--resume", "--max-iters", "20"])
    assert "'history'" in line and len(line) < 400
