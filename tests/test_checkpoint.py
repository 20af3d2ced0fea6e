import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from gptcore import checkpoint as ckpt
from gptcore.config import RunConfig
from gptcore.errors import CheckpointError
from gptcore.models import GPT
from gptcore.tokenizers import CharTokenizer
from tests.conftest import small_config


def _save(path, seed=0, **model_overrides):
    torch.manual_seed(seed)
    config = RunConfig(small_config(**model_overrides))
    model = GPT(config.model)
    tok = CharTokenizer([chr(c) for c in range(32, 97)])
    ckpt.save_checkpoint(path, model, config, tok, {"val_loss": 1.0, "seed": seed})
    return model


def test_round_trip(tmp_path):
    model = _save(tmp_path / "c")
    loaded = ckpt.load_checkpoint(tmp_path / "c")
    assert loaded.metrics["seed"] == 0 and not loaded.model.training
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.model.state_dict().items()):
        assert torch.equal(a, b), k
    assert sorted(os.listdir(tmp_path / "c")) == ["config.json", "manifest.json", "metrics.json",
                                                  "model.safetensors", "tokenizer.json"]


def test_float16_storage_halves_the_file(tmp_path):
    model = _save(tmp_path / "a")
    config = RunConfig(small_config())
    config.train.save_dtype = "float16"
    ckpt.save_checkpoint(tmp_path / "b", model, config, CharTokenizer([chr(c) for c in range(32, 97)]), {})
    assert os.path.getsize(tmp_path / "b" / ckpt.WEIGHTS) < 0.6 * os.path.getsize(tmp_path / "a" / ckpt.WEIGHTS)
    loaded = ckpt.load_checkpoint(tmp_path / "b").model
    w = loaded.state_dict()["lm_head.weight"]
    assert w.dtype == torch.float32
    assert torch.allclose(w, model.state_dict()["lm_head.weight"], atol=1e-3)


def _save_in_parts(path, max_file_bytes, model=None):
    torch.manual_seed(0)
    config = RunConfig(small_config())
    model = model or GPT(config.model)
    ckpt.save_checkpoint(path, model, config, CharTokenizer([chr(c) for c in range(32, 97)]), {},
                         max_file_bytes=max_file_bytes)
    return model


def test_weights_saved_in_files_under_a_size_load_back_whole(tmp_path):
    from gptcore.storage import HEADER_ROOM

    limit = HEADER_ROOM + 40_000  # the small model's float32 weights take several such files
    model = _save_in_parts(tmp_path / "c", limit)
    files = ckpt.weights_files(tmp_path / "c")
    assert [f.name for f in files] == [ckpt.WEIGHTS] + list(ckpt.WEIGHT_PARTS[:len(files) - 1]) and len(files) > 2
    assert all(f.stat().st_size < limit for f in files)
    assert ckpt.checkpoint_files(tmp_path / "c")[:len(files)] == files
    loaded = ckpt.load_checkpoint(tmp_path / "c").model.state_dict()
    assert loaded.keys() == model.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    _save_in_parts(tmp_path / "c", None, model)  # saved again whole: the parts leave the checkpoint
    assert [f.name for f in ckpt.weights_files(tmp_path / "c")] == [ckpt.WEIGHTS]
    assert not any((tmp_path / "c" / n).exists() for n in ckpt.WEIGHT_PARTS)


def test_a_missing_damaged_or_foreign_part_is_refused(tmp_path):
    from gptcore.storage import HEADER_ROOM

    _save_in_parts(tmp_path / "c", HEADER_ROOM + 40_000)
    part = tmp_path / "c" / ckpt.WEIGHT_PARTS[0]
    part.unlink()
    with pytest.raises(CheckpointError, match="does not match"):  # the manifest names it
        ckpt.load_checkpoint(tmp_path / "c")
    _save_in_parts(tmp_path / "d", HEADER_ROOM + 40_000)
    _without_manifest(tmp_path / "d")
    (tmp_path / "d" / ckpt.WEIGHT_PARTS[0]).unlink()
    with pytest.raises(CheckpointError, match="its weights .* hold .* numbers, the config needs"):
        ckpt.load_checkpoint(tmp_path / "d")
    (tmp_path / "d" / ckpt.WEIGHT_PARTS[0]).write_bytes((tmp_path / "d" / ckpt.WEIGHTS).read_bytes())
    with pytest.raises(CheckpointError, match="holds .* again: the weights files belong to different saves"):
        ckpt.load_checkpoint(tmp_path / "d")
    with pytest.raises(CheckpointError, match=f"cannot be saved in files under {1_000 + HEADER_ROOM:,} bytes: "
                                              f"blocks.0.attn.proj.weight alone is 4.1 KB, more than the 1.0 KB"):
        _save_in_parts(tmp_path / "e", 1_000 + HEADER_ROOM)


def _without_manifest(path):
    """A checkpoint as the shipped ones are (written before manifests), so the file-level checks show."""
    (path / ckpt.MANIFEST).unlink()
    return path


def test_truncated_and_tampered_weights_are_refused(tmp_path):
    _save(tmp_path / "c")
    weights = tmp_path / "c" / ckpt.WEIGHTS
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors does not match .*manifest.json"):
        ckpt.load_checkpoint(tmp_path / "c")
    _without_manifest(tmp_path / "c")
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        ckpt.load_checkpoint(tmp_path / "c")
    tampered = bytearray(data)
    tampered[-100] ^= 0xFF  # a byte of the last tensor's values (safetensors puts the header first)
    weights.write_bytes(bytes(tampered))
    with pytest.raises(CheckpointError, match="failed its checksum"):
        ckpt.load_checkpoint(tmp_path / "c")
    import safetensors.torch
    weights.write_bytes(safetensors.torch.save({"tok_emb.weight": torch.zeros(2)}))  # safetensors, not ours
    with pytest.raises(CheckpointError, match="without gptcore's checksum"):
        ckpt.load_checkpoint(tmp_path / "c")


def test_checkpoints_with_torch_weights_still_load_and_a_new_save_replaces_them(tmp_path):
    """Checkpoints written before safetensors (model.pt, the shipped ones among them) load as they are."""
    from gptcore.storage import load_tensors, tensors_bytes

    model = _save(tmp_path / "c")
    legacy = tmp_path / "c" / ckpt.LEGACY_WEIGHTS
    legacy.write_bytes(tensors_bytes(load_tensors(tmp_path / "c" / ckpt.WEIGHTS)))
    (tmp_path / "c" / ckpt.WEIGHTS).unlink()
    _without_manifest(tmp_path / "c")
    assert ckpt.weights_file(tmp_path / "c") == legacy
    loaded = ckpt.load_checkpoint(tmp_path / "c").model
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    _save(tmp_path / "c", seed=5)  # training on into the same directory
    assert not legacy.exists() and ckpt.weights_file(tmp_path / "c").name == ckpt.WEIGHTS
    ckpt.load_checkpoint(tmp_path / "c")


def test_arbitrary_pickles_are_not_loaded(tmp_path):
    _save(tmp_path / "c")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "c" / ckpt.WEIGHTS).unlink()
    torch.save({"format": 1, "tensors": Evil()}, _without_manifest(tmp_path / "c") / ckpt.LEGACY_WEIGHTS)
    with pytest.raises(CheckpointError):
        ckpt.load_checkpoint(tmp_path / "c")


def test_missing_and_damaged_files_have_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.load_checkpoint(tmp_path / "nothing")
    _save(tmp_path / "c")
    (_without_manifest(tmp_path / "c") / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        ckpt.load_checkpoint(tmp_path / "c")
    _save(tmp_path / "d")
    (tmp_path / "d" / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer"):
        ckpt.load_checkpoint(tmp_path / "d")
    _save(tmp_path / "e")
    _save(tmp_path / "f", n_embd=64)
    os.replace(tmp_path / "f" / ckpt.WEIGHTS, _without_manifest(tmp_path / "e") / ckpt.WEIGHTS)
    with pytest.raises(CheckpointError, match="do not match"):
        ckpt.load_checkpoint(tmp_path / "e")


SAVER = """
import sys, torch
from tests.test_checkpoint import _save
print("ready", flush=True)
seed = 1
while True:  # overwrite the checkpoint with new weights as fast as possible until killed
    _save(sys.argv[1], seed=seed, n_embd=256, n_layer=4, block_size=128)
    seed += 1
"""


@pytest.mark.slow  # starts and kills four processes
def test_killed_save_leaves_a_readable_checkpoint(tmp_path):
    target = tmp_path / "c"
    _save(target, seed=0, n_embd=256, n_layer=4, block_size=128)
    for delay in (0.3, 0.55, 0.8, 1.1):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(target)], stdout=subprocess.PIPE,
                                cwd=os.path.dirname(os.path.dirname(__file__)))
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        loaded = ckpt.load_checkpoint(target)  # old or new, never broken
        assert loaded.config.model.n_embd == 256
    leftovers = [n for n in os.listdir(target) if n.endswith(".tmp")]
    assert len(leftovers) <= 4  # a killed writer may leave its temp file, never a half-written target


def test_a_checkpoint_changes_as_a_whole_wherever_a_save_is_interrupted(tmp_path, monkeypatch):
    """Inject a crash before each rename of a save, in turn: the checkpoint that loads is always the whole
    previous one or the whole new one (weights, config and metrics of one save), and the next save works."""
    from gptcore import storage

    def expected_weights(seed):
        torch.manual_seed(seed)
        return GPT(small_config()).state_dict()

    target = tmp_path / "c"
    _save(target, seed=0)
    real_replace = os.replace
    current, outcomes = 0, []
    for k in range(30):
        calls = []

        def crash_at_k(src, dst, calls=calls, k=k):
            calls.append(dst)
            if len(calls) > k:
                raise OSError("injected crash")
            return real_replace(src, dst)

        monkeypatch.setattr(storage.os, "replace", crash_at_k)
        try:
            _save(target, seed=k + 1, dropout=0.1 * (k % 2))
            crashed = False
        except OSError:
            crashed = True
        monkeypatch.setattr(storage.os, "replace", real_replace)
        loaded = ckpt.load_checkpoint(target)
        seed = loaded.metrics["seed"]
        assert seed in (current, k + 1), (k, seed)
        for name, tensor in expected_weights(seed).items():
            assert torch.equal(loaded.model.state_dict()[name], tensor), (k, name)
        assert loaded.config.model.dropout == pytest.approx(0.1 * ((seed - 1) % 2) if seed else 0.0)
        outcomes.append(seed == k + 1)
        current = seed
        if not crashed:
            break
    assert not outcomes[0] and outcomes[-1]  # a crash before the first rename keeps the old one
    assert any(outcomes[:-1])  # a crash after the manifest's rename already gives the new checkpoint


def test_a_file_without_a_checksum_of_its_own_is_guarded_by_the_manifest(tmp_path):
    _save(tmp_path / "c")
    metrics = tmp_path / "c" / ckpt.METRICS
    metrics.write_text(metrics.read_text().replace("{", '{"forged": 1, ', 1))  # still valid JSON
    with pytest.raises(CheckpointError, match="metrics.json does not match .*manifest.json"):
        ckpt.load_checkpoint(tmp_path / "c")
    _without_manifest(tmp_path / "c")
    assert ckpt.load_checkpoint(tmp_path / "c").metrics["forged"] == 1  # no other defence: the manifest is it


class _Runs:
    """A pickle that would run code when loaded without weights_only."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickle_with_code_is_called_what_it_is_not_truncated(tmp_path):
    from gptcore.storage import safe_torch_load

    torch.save({"model": _Runs()}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match="holds objects other than tensors and plain data") as refused:
        safe_torch_load(tmp_path / "code.pt")
    assert "truncated" not in str(refused.value)
    (tmp_path / "cut.pt").write_bytes((tmp_path / "code.pt").read_bytes()[:40])
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        safe_torch_load(tmp_path / "cut.pt")
