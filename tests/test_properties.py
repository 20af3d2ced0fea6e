"""Property-based tests: random bytes, random JSON and random values into every loader and setting.

Each must end in success or in gptcore's own error (GptcoreError, or ValueError for Python API misuse),
never another exception type, and quickly (hypothesis's deadline bounds each example)."""

import json
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptcore.bounded import check_plain, read_json_file, short_repr
from gptcore.checkpoint import load_checkpoint
from gptcore.config import ModelConfig, RunConfig, TrainConfig, parse_assignments, setting_names
from gptcore.data import Corpus, read_corpus
from gptcore.errors import CheckpointError, GptcoreError
from gptcore.experiments.ablation_results import validate_results
from gptcore.inference.draft import NgramDraft
from gptcore.storage import load_tensors
from gptcore.tokenizers import BPETokenizer, load_tokenizer
from gptcore.tokenizers.bpe import PATTERNS
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


# Bounded reading (gptcore.bounded) and the tokenizer's splitting patterns ------------------------------------

plain_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.tuples(inner) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30)


@CASES
@given(value=plain_values, limit=st.integers(5, 120))
def test_short_repr_is_repr_cut_short(value, limit):
    full, short = repr(value), short_repr(value, limit)
    assert short == full if len(full) <= limit else (len(short) == limit + 1 and short.endswith("…"))


@CASES
@given(width=st.integers(2, 50), depth=st.integers(1, 40), limit=st.integers(5, 200))
def test_shared_references_are_bounded_everywhere(width, depth, limit):
    value: list = [0]
    for _ in range(depth):
        value = [value] * width
    assert len(short_repr(value, limit)) <= limit + 1
    try:
        check_plain(value, "x", max_depth=64, max_nodes=10_000)
    except CheckpointError as e:
        assert "more than" in str(e)
    else:
        assert sum(width ** d for d in range(depth + 1)) <= 10_000


@CASES
@given(depth=st.integers(0, 100_000), kind=st.sampled_from("[{"))
def test_json_of_any_depth_reads_or_is_refused_by_name(tmp_path, depth, kind):
    path = tmp_path / "x.json"
    path.write_text(('{"a":' * depth + "1" + "}" * depth) if kind == "{" else ("[" * depth + "1" + "]" * depth))
    try:
        read_json_file(path)
    except CheckpointError as e:
        assert str(path) in str(e) and depth > 32
    else:
        assert depth <= 33


# every class of character: letters, marks, digits, other numbers, punctuation, symbols, spaces and controls,
# surrogate-free Unicode from every plane, and runs of each
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=200)
EVERY_BYTE_CLASS = "".join(chr(c) for c in range(128)) + "é ü ß Ω 中文 ١٢٣ ² ½ \u00a0\u2028\u3000 \u0301 😀 'll 'S __ x_y 12345 "


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_every_known_pattern_covers_a_sample_of_every_character_class(name):
    pieces = re.findall(PATTERNS[name], EVERY_BYTE_CLASS)
    assert "".join(pieces) == EVERY_BYTE_CLASS and all(pieces)
    tokenizer = BPETokenizer.train(EVERY_BYTE_CLASS * 3, 300, pattern=name)
    assert tokenizer.decode(tokenizer.encode(EVERY_BYTE_CLASS)) == EVERY_BYTE_CLASS


@CASES
@given(text=any_text, name=st.sampled_from(sorted(PATTERNS)))
def test_every_known_pattern_splits_any_text_into_pieces_that_join_back(text, name):
    assert "".join(re.findall(PATTERNS[name], text)) == text


@CASES
@given(merges=st.lists(st.tuples(st.integers(-2, 300), st.integers(-2, 300)), max_size=60), text=any_text)
def test_random_merges_load_and_round_trip_or_are_refused(tmp_path, merges, text):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({"type": "bpe", "pattern": PATTERNS["gptcore"], "merges": merges}))
    tokenizer = expect_clean(load_tokenizer, path)
    assert tokenizer is None or tokenizer.decode(tokenizer.encode(text)) == text
