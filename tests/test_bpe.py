"""Byte-level BPE: hand-checked merges, exact round trips on any text, the reference merge order, streaming."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptcore.errors import CheckpointError, UnknownCharactersError
from gptcore.tokenizers import BPETokenizer, load_tokenizer, tokenizer_from_dict
from gptcore.tokenizers.bpe import SPLIT_PATTERN, merge_pair

A, B, SPACE = ord("a"), ord("b"), ord(" ")
HARD_TEXTS = ["", "a", "héllo wörld", "emoji 😀👍🏽 and flags 🇫🇷", "combining e\u0301 and a\u0308\u0323",
              "中文字符 日本語", "tabs\tand\r\nCRLF  spaces   ", "snake_case_name __init__ 1234567", "it's we'll they're",
              "\x00\x01 control", "\U0010FFFF"]


@pytest.fixture(scope="module")
def shakespeare_bpe(corpus_text):
    return BPETokenizer.train(corpus_text[:200_000], 512)


def test_merges_on_a_hand_checked_text():
    # chunks "aaab", " aab", " ab": (a,a)=3, (a,b)=3, (' ',a)=2 -> the tie goes to the smaller pair (a,a);
    # then (a,b)=2 (in "aaab" only one a-b remains after aa merged, plus " ab"); after that no pair occurs twice
    tok = BPETokenizer.train("aaab aab ab", 300)
    assert tok.merges == [(A, A), (A, B)]
    assert tok.vocab_size == 258
    assert tok.encode("aaab") == [256, 257]
    assert tok.encode(" aab") == [SPACE, 256, B]
    assert tok.piece(256) == "aa" and tok.piece(257) == "ab"


def test_a_vocabulary_below_the_bytes_is_refused():
    with pytest.raises(ValueError, match="at least 256"):
        BPETokenizer.train("abc", 100)


def test_merge_pair_goes_left_to_right():
    assert merge_pair([A, A, A], (A, A), 256) == [256, A]
    assert merge_pair([A, B, A, B], (A, B), 256) == [256, 256]


@pytest.mark.parametrize("text", HARD_TEXTS)
def test_round_trip_on_hard_text(shakespeare_bpe, text):
    assert shakespeare_bpe.decode(shakespeare_bpe.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_round_trip_on_any_unicode(shakespeare_bpe, text):
    ids = shakespeare_bpe.encode(text)
    assert all(0 <= i < shakespeare_bpe.vocab_size for i in ids)
    assert shakespeare_bpe.decode(ids) == text


@settings(max_examples=50, deadline=None)
@given(text=st.text(max_size=300))
def test_the_split_pattern_loses_nothing(text):
    import re
    assert "".join(re.findall(SPLIT_PATTERN, text)) == text


def test_lone_surrogates_are_refused_clearly(shakespeare_bpe):
    with pytest.raises(UnknownCharactersError, match="ud800"):
        shakespeare_bpe.encode("ab\ud800c")
    assert shakespeare_bpe.decode(shakespeare_bpe.encode("ab\ud800c", policy="replace")) == "ab\ufffdc"
    assert shakespeare_bpe.decode(shakespeare_bpe.encode("ab\ud800c", policy="drop")) == "abc"
    with pytest.raises(UnknownCharactersError):
        BPETokenizer.train("text with a \udfff surrogate", 300)


def reference_encode(tok: BPETokenizer, text: str) -> list[int]:
    """The definition: replay every merge, in the order learned, over each chunk's bytes."""
    import re
    out = []
    for chunk in re.findall(tok.pattern, text):
        ids = list(chunk.encode("utf-8"))
        for rank, pair in enumerate(tok.merges):
            ids = merge_pair(ids, pair, 256 + rank)
        out += ids
    return out


def test_encode_equals_the_reference_merge_order(shakespeare_bpe, corpus_text):
    text = corpus_text[-20_000:] + " ".join(HARD_TEXTS)
    assert shakespeare_bpe.encode(text) == reference_encode(shakespeare_bpe, text)


def test_training_is_deterministic_and_learns_words(corpus_text):
    first = BPETokenizer.train(corpus_text[:100_000], 400)
    second = BPETokenizer.train(corpus_text[:100_000], 400)
    assert first.merges == second.merges and first.vocab_size == 400
    assert " the" in {first.piece(i) for i in range(256, 400)}
    # the merges compress: fewer tokens than bytes
    assert len(first.encode(corpus_text[-10_000:])) < 0.7 * len(corpus_text[-10_000:].encode())


def test_streaming_never_splits_a_character():
    tok = BPETokenizer([])  # bytes only: every multi-byte character spans several tokens
    text = "né 😀 中"
    ids = tok.encode(text)
    assert len(ids) == len(text.encode())
    pieces = list(tok.decode_stream(ids))
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    assert tok.piece(ids[1]) == "\\xc3"  # half of "é", shown as its byte


def test_streaming_of_invalid_bytes_ends_in_a_replacement():
    tok = BPETokenizer([])
    assert "".join(tok.decode_stream([A, 0xE2, 0x82])) == "a\ufffd"
    assert tok.decode([0xFF, A]) == "\ufffda"


def test_char_counts_count_characters(shakespeare_bpe):
    text = "héllo 😀 wörld, it's"
    counts = shakespeare_bpe.char_counts()
    assert sum(counts[i] for i in shakespeare_bpe.encode(text)) == len(text)


def test_save_and_load(tmp_path, shakespeare_bpe):
    shakespeare_bpe.save(tmp_path / "tok.json")
    back = load_tokenizer(tmp_path / "tok.json")
    assert isinstance(back, BPETokenizer) and back.merges == shakespeare_bpe.merges
    assert back.encode("Wherefore art thou") == shakespeare_bpe.encode("Wherefore art thou")


def test_damaged_merges_are_a_checkpoint_error(tmp_path, shakespeare_bpe):
    data = shakespeare_bpe.to_dict()
    data["merges"][3] = [999, 1]  # an id that does not exist yet at rank 3
    (tmp_path / "tok.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="damaged"):
        load_tokenizer(tmp_path / "tok.json")
    with pytest.raises(ValueError, match="twice"):
        tokenizer_from_dict({"type": "bpe", "pattern": SPLIT_PATTERN, "merges": [[1, 2], [1, 2]]})
