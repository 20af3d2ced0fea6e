import pytest

from gptcore.errors import UnknownCharactersError
from gptcore.tokenizers import CharTokenizer, load_tokenizer


def test_round_trip_over_vocabulary(corpus):
    tok = corpus.tokenizer
    text = "To be, or not to be:\nthat is the question!  ZZ&$3"
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == 65
    assert tok.decode(tok.encode(corpus.tokenizer.decode(corpus.val[:5000].tolist()))) == tok.decode(corpus.val[:5000].tolist())


def test_vocabulary_is_sorted_and_stable():
    tok = CharTokenizer.from_text("banana")
    assert tok.chars == ["a", "b", "n"]
    assert tok.encode("nab") == [2, 0, 1]


def test_unknown_characters_are_named():
    tok = CharTokenizer.from_text("abc ")
    with pytest.raises(UnknownCharactersError) as info:
        tok.encode("abxz€a")
    assert "'x'" in str(info.value) and "'z'" in str(info.value) and "'€'" in str(info.value)
    assert info.value.chars == ["x", "z", "€"]


def test_replacement_policies():
    tok = CharTokenizer.from_text("abc ")
    assert tok.decode(tok.encode("axb", policy="replace")) == "a b"
    assert tok.decode(tok.encode("axb", policy="drop")) == "ab"
    with pytest.raises(ValueError, match="policy"):
        tok.encode("a", policy="ignore")


def test_save_and_load(tmp_path):
    tok = CharTokenizer.from_text("hello\nworld")
    tok.save(tmp_path / "t.json")
    assert load_tokenizer(tmp_path / "t.json").chars == tok.chars
