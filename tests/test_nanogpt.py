"""Importing nanoGPT checkpoints: logits equal nanoGPT's own, its variants, and hostile vocabularies refused."""

import json
import math
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gptcore.checkpoint import load_checkpoint
from gptcore.cli import main
from gptcore.errors import CheckpointError
from gptcore.interop.nanogpt import import_nanogpt, read_meta

NANOGPT = Path(__file__).resolve().parents[2] / "shared" / "nanogpt" / "char-tiny"
pytestmark = pytest.mark.skipif(not (NANOGPT / "ckpt.pt").is_file(),
                                reason=f"nanoGPT's reference checkpoint is not at {NANOGPT}")


def nanogpt_forward(sd: dict, args: dict, idx: torch.Tensor) -> torch.Tensor:
    """nanoGPT's model.py forward, restated from its state dict alone (independent of gptcore's model)."""
    B, T = idx.shape
    C, H = args["n_embd"], args["n_head"]
    norm = lambda x, name: F.layer_norm(x, (C,), sd[name + ".weight"], sd.get(name + ".bias"), 1e-5)  # noqa: E731
    linear = lambda x, name: F.linear(x, sd[name + ".weight"], sd.get(name + ".bias"))  # noqa: E731
    x = sd["transformer.wte.weight"][idx] + sd["transformer.wpe.weight"][:T]
    for i in range(args["n_layer"]):
        h = f"transformer.h.{i}."
        q, k, v = linear(norm(x, h + "ln_1"), h + "attn.c_attn").split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // H)
        att = att.masked_fill(torch.ones(T, T).tril() == 0, float("-inf")).softmax(-1)
        x = x + linear((att @ v).transpose(1, 2).reshape(B, T, C), h + "attn.c_proj")
        x = x + linear(F.gelu(linear(norm(x, h + "ln_2"), h + "mlp.c_fc")), h + "mlp.c_proj")
    return F.linear(norm(x, "transformer.ln_f"), sd["lm_head.weight"])


@pytest.fixture(scope="module")
def raw():
    return torch.load(NANOGPT / "ckpt.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def reference():
    return torch.load(NANOGPT / "reference_logits.pt", map_location="cpu", weights_only=True)


def logits_of(directory: Path, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return load_checkpoint(directory).model(idx)[0]


def test_logits_equal_nanogpts_own_forward(tmp_path, reference):
    out = import_nanogpt(NANOGPT / "ckpt.pt", tmp_path / "imported")
    got = logits_of(out, reference["input_ids"])
    diff = (got - reference["logits"]).abs().max().item()
    assert diff < 1e-5, diff
    ck = load_checkpoint(out)
    assert ck.config.model.tie_embeddings and ck.config.model.bias
    with open(NANOGPT / "meta.pkl", "rb") as f:
        itos = pickle.load(f)["itos"]  # the test's own trusted copy
    assert ck.tokenizer.chars == [itos[i] for i in range(len(itos))]


def test_the_restated_forward_is_nanogpts(raw, reference):
    """The reference used for the variants below reproduces nanoGPT's logits on its real checkpoint."""
    with torch.no_grad():
        got = nanogpt_forward(raw["model"], raw["model_args"], reference["input_ids"])
    assert (got - reference["logits"]).abs().max().item() < 1e-5


def write_variant(tmp_path: Path, raw: dict, state: dict, **args) -> Path:
    variant = {**raw, "model": state, "model_args": {**raw["model_args"], **args}}
    variant.pop("optimizer")  # checkpoints in the wild come with or without it
    path = tmp_path / "ckpt.pt"
    torch.save(variant, path)
    (tmp_path / "meta.pkl").write_bytes((NANOGPT / "meta.pkl").read_bytes())
    return path


@pytest.mark.parametrize("variant", ["no-bias", "compiled", "dropout"])
def test_variants_import_exactly(tmp_path, raw, reference, variant):
    state, args = dict(raw["model"]), {}
    if variant == "no-bias":
        torch.manual_seed(0)
        state = {k: v for k, v in state.items() if not k.endswith(".bias")}
        state = {k: v + 0.01 * torch.randn_like(v) if k != "lm_head.weight" else v for k, v in state.items()}
        state["lm_head.weight"] = state["transformer.wte.weight"]
        args = {"bias": False}
    elif variant == "dropout":
        args = {"dropout": 0.1}
    expected = nanogpt_forward(state, {**raw["model_args"], **args}, reference["input_ids"])
    if variant == "compiled":
        state = {"_orig_mod." + k: v for k, v in state.items()}
    out = import_nanogpt(write_variant(tmp_path, raw, state, **args), tmp_path / "imported")
    assert (logits_of(out, reference["input_ids"]) - expected).abs().max().item() < 1e-5
    ck = load_checkpoint(out)
    assert ck.config.model.bias == (variant != "no-bias")
    assert ck.config.model.dropout == (0.1 if variant == "dropout" else 0.0)


def test_the_cli_imports_evaluates_and_samples(tmp_path, capsys, raw):
    out = tmp_path / "ng"
    assert main(["import-nanogpt", str(NANOGPT / "ckpt.pt"), "--meta", str(NANOGPT / "meta.pkl"), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["iter_num"] == raw["iter_num"] and printed["vocab_size"] == 65
    source = json.loads((out / "metrics.json").read_text())["imported_from"]["nanogpt"]
    assert len(source["sha256"]) == 64 and source["model_args"]["n_embd"] == 48
    assert source["best_val_loss"] == pytest.approx(float(raw["best_val_loss"]))
    assert main(["eval", "--checkpoint", str(out)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert 1.0 < evaluated["val_loss"] < 4.2 and evaluated["val_tokens"] == 111_540
    assert main(["sample", "--checkpoint", str(out), "--prompt", "ROMEO:", "--max-new-tokens", "30", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO:")


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_with_code_is_refused_without_running(tmp_path):
    marker = tmp_path / "was-run"
    (tmp_path / "meta.pkl").write_bytes(pickle.dumps({"itos": {0: "a"}, "x": _RunsCode(marker)}))
    with pytest.raises(CheckpointError, match="only plain data"):
        read_meta(tmp_path / "meta.pkl")
    assert not marker.exists()


@pytest.mark.parametrize("payload, message", [
    (b"not a pickle", "not a readable pickle"),
    (pickle.dumps({"stoi": {"a": 0}}), "no 'itos'"),
    (pickle.dumps({"itos": {0: "ab"}}), "single characters"),
    (pickle.dumps({"itos": {0: "a", 2: "b"}}), "no 'itos'"),
])
def test_bad_vocabularies_are_clear_errors(tmp_path, payload, message):
    (tmp_path / "meta.pkl").write_bytes(payload)
    with pytest.raises(CheckpointError, match=message):
        read_meta(tmp_path / "meta.pkl")


def test_missing_or_mismatched_vocabularies_say_what_is_needed(tmp_path, raw):
    gpt2 = {**raw, "model_args": {**raw["model_args"], "vocab_size": 50304}}
    torch.save(gpt2, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match="GPT-2.s vocabulary, encoder.json and vocab.bpe"):
        import_nanogpt(tmp_path / "ckpt.pt", tmp_path / "out")
    (tmp_path / "v").mkdir()
    path = write_variant(tmp_path / "v", raw, dict(raw["model"]))
    (path.parent / "meta.pkl").write_bytes(pickle.dumps({"itos": {0: "a", 1: "b"}}))
    with pytest.raises(CheckpointError, match="not the same vocabulary"):
        import_nanogpt(path, tmp_path / "out")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a nanoGPT checkpoint"):
        import_nanogpt(tmp_path / "other.pt", tmp_path / "out")
    assert main(["import-nanogpt", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "out")]) == 1


def test_an_untied_head_imports_untied_and_matches_nanogpt(tmp_path, raw, reference):
    torch.manual_seed(1)
    state = dict(raw["model"])
    state["lm_head.weight"] = state["transformer.wte.weight"] + 0.2 * torch.randn_like(state["transformer.wte.weight"])
    expected = nanogpt_forward(state, raw["model_args"], reference["input_ids"])
    out = import_nanogpt(write_variant(tmp_path, raw, state), tmp_path / "imported")
    assert not load_checkpoint(out).config.model.tie_embeddings
    assert (logits_of(out, reference["input_ids"]) - expected).abs().max().item() < 1e-5
