"""Property-based tests: random bytes, random JSON and random values into every loader and setting.

Each must end in success or in gptcore's own error (GptcoreError, or ValueError for Python API misuse),
never another exception type, and quickly (hypothesis's deadline bounds each example)."""

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptcore.checkpoint import load_checkpoint
from gptcore.config import ModelConfig, RunConfig, TrainConfig, parse_assignments, setting_names
from gptcore.data import Corpus, read_corpus
from gptcore.errors import GptcoreError
from gptcore.experiments.ablation_results import validate_results
from gptcore.inference.draft import NgramDraft
from gptcore.storage import load_tensors
from gptcore.tokenizers import load_tokenizer
from gptcore.training.state import TrainState

ROOT = Path(__file__).resolve().parents[1]
CASES = settings(max_examples=40, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)


def expect_clean(fn, *args):
    try:
        return fn(*args)
    except (GptcoreError, ValueError):
        return None


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("ck") / "bigram"
    shutil.copytree(ROOT / "checkpoints" / "bigram", target)
    return target


@CASES
@given(data=st.binary(max_size=2000))
def test_random_bytes_into_every_file_loader(tmp_path, data):
    path = tmp_path / "f"
    path.write_bytes(data)
    for loader in (load_tensors, load_tokenizer, NgramDraft.load, TrainState.load, read_corpus):
        expect_clean(loader, path)


@CASES
@given(key=st.sampled_from(["model", "train"]), field=st.sampled_from(sorted(set(ModelConfig.__dataclass_fields__)
                                                                            | set(TrainConfig.__dataclass_fields__))),
       value=json_values)
def test_random_json_in_a_checkpoint_config(shipped, tmp_path, key, field, value):
    target = tmp_path / "ck"
    shutil.copytree(shipped, target, dirs_exist_ok=True)
    config = json.loads((target / "config.json").read_text())
    config[key][field] = value
    (target / "config.json").write_text(json.dumps(config))
    ck = expect_clean(load_checkpoint, target)
    assert ck is None or ck.config.model.arch in ("gpt", "bigram")


@CASES
@given(document=json_values)
def test_random_json_as_a_whole_file(shipped, tmp_path, document):
    for name in ("config.json", "tokenizer.json", "metrics.json"):
        target = tmp_path / "ck"
        shutil.copytree(shipped, target, dirs_exist_ok=True)
        (target / name).write_text(json.dumps(document))
        expect_clean(load_checkpoint, target)
    expect_clean(validate_results, document)


@CASES
@given(name=st.sampled_from(setting_names()), value=json_values)
def test_random_values_into_every_setting(name, value):
    run = expect_clean(RunConfig().with_overrides, {name: value})
    if run is not None:  # what is accepted is valid
        run.model.validate()
        run.train.validate()


@CASES
@given(name=st.sampled_from(setting_names()), raw=st.text(max_size=30))
def test_random_strings_on_the_command_line(name, raw):
    values = expect_clean(parse_assignments, [f"{name}={raw}"])
    if values is not None:
        expect_clean(RunConfig().with_overrides, values)


@CASES
@given(text=st.text(min_size=0, max_size=300))
def test_random_text_as_a_corpus(tmp_path, text):
    path = tmp_path / "c.txt"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    corpus = expect_clean(Corpus.load, path)
    read_as = text.replace("\r\n", "\n").replace("\r", "\n")  # text files are read with universal newlines
    assert corpus is None or len(corpus.train) + len(corpus.val) == len(read_as)
