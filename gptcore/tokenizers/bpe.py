"""Byte-level BPE, trained from scratch: any UTF-8 text round-trips exactly, so nothing is unknown.

Training (:meth:`BPETokenizer.train`) cuts the text into chunks with a regular expression (words with
their leading space, runs of digits, runs of punctuation, whitespace), so that no merge crosses a word
boundary; then, starting from the 256 byte values, it repeatedly merges the most frequent adjacent pair
of ids into a new id and records that merge, until the vocabulary has the size asked for. Encoding
applies the recorded merges to each chunk's bytes, lowest rank first, which gives the same ids as
replaying the merges in the order they were learned (a test checks it). Chunks repeat a lot in real
text, so encoded chunks are cached, each as the bytes of its ids (int32): the ids of a whole text are then one
bytes join, in C, rather than a Python step per chunk.
"""

from __future__ import annotations

import codecs
import heapq
import re
from array import array
from collections import Counter, defaultdict
from itertools import repeat
from typing import Iterable, Iterator

from ..bounded import short_repr
from ..config import is_int
from ..errors import UnknownCharactersError
from .base import Tokenizer

# contractions; letters (\w without digits and "_"); digits in threes; other symbols ("_" among them);
# whitespace, leaving the last space before a word to that word. Together they match every character.
SPLIT_PATTERN = r"'(?:s|t|re|ve|m|ll|d)| ?[^\W\d_]+| ?\d{1,3}| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"
# GPT-2's, with ``re``'s nearest classes for its \p{L} and \p{N} (gptcore.interop.gpt2 explains)
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"
# The only patterns a tokenizer may split with. A saved tokenizer names its pattern by its text (as files
# always have), and any other text is refused: a free pattern can drop text (one that does not match
# every character, or has a capturing group, which makes ``findall`` return the group only) or take
# exponential time on a crafted prompt (nested quantifiers), and neither can be ruled out by checking
# the pattern. Each of these is tested to split any text into pieces that join back to it.
PATTERNS = {"gptcore": SPLIT_PATTERN, "gpt2": GPT2_PATTERN}
N_BYTES = 256
MAX_VOCAB = 1 << 22  # ids a tokenizer may have (GPT-4's has about 100,000)
MAX_TOKEN_BYTES = 1 << 26  # the text of all tokens together: merges can make tokens that double in length
_CACHE_LIMIT = 1 << 20  # encoded chunks kept; past this the cache starts again
_NOT_MERGED = 1 << 62  # the rank of a pair that no merge joins
_ID_TYPE = "i"  # how cached chunks hold their ids: int32 (MAX_VOCAB fits)
_SURROGATES = re.compile("[\ud800-\udfff]")


def merge_pair(ids: list[int], pair: tuple[int, int], new: int) -> list[int]:
    """``ids`` with every occurrence of ``pair``, left to right, replaced by ``new``."""
    out, i, n = [], 0, len(ids)
    a, b = pair
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BPETokenizer(Tokenizer):
    """``merges[r]`` is the pair of ids that became id ``256 + r``; ids below 256 are single bytes.

    Ours number the bytes by value. GPT-2's vocabulary (read by :mod:`gptcore.interop.gpt2`) is the same
    scheme with the 256 bytes in another order (``byte_ids[b]`` is byte b's id) and ids past the merges
    (``<|endoftext|>``, and the padding nanoGPT adds up to ``vocab_size``) that stand for no text."""

    type_name = "bpe"

    def __init__(self, merges: list[tuple[int, int]], pattern: str = SPLIT_PATTERN, byte_ids: list[int] | None = None,
                 vocab_size: int | None = None, specials: dict[int, str] | None = None):
        self.merges = _checked_merges(merges)
        self.byte_ids = list(range(N_BYTES)) if byte_ids is None else [_id(i) for i in byte_ids]
        if sorted(self.byte_ids) != list(range(N_BYTES)):
            raise ValueError("byte_ids must give each of the 256 bytes its own id below 256")
        self._size = N_BYTES + len(self.merges) if vocab_size is None else _id(vocab_size)
        if not N_BYTES + len(self.merges) <= self._size <= MAX_VOCAB:
            raise ValueError(f"vocab_size must be from the {N_BYTES + len(self.merges)} ids the merges make to "
                             f"{MAX_VOCAB:,}, got {self._size:,}")
        self.specials = {_id(k): str(v) for k, v in (specials or {}).items()}
        if any(not N_BYTES + len(self.merges) <= k < self._size for k in self.specials):
            raise ValueError("special ids must come after the merges and below vocab_size")
        self.pattern = known_pattern(pattern)
        self._split = re.compile(self.pattern)
        self._ranks = {pair: N_BYTES + rank for rank, pair in enumerate(self.merges)}
        if len(self._ranks) != len(self.merges):
            raise ValueError("a pair is merged twice")
        self._bytes = [b""] * N_BYTES
        for value, token in enumerate(self.byte_ids):
            self._bytes[token] = bytes([value])
        for a, b in self.merges:
            self._bytes.append(self._bytes[a] + self._bytes[b])
        self._bytes += [b""] * (self._size - len(self._bytes))  # special and padding ids: no text
        self._identity = self.byte_ids == list(range(N_BYTES))
        self._cache: dict[str, bytes] = {}  # chunk -> its ids, packed as int32

    # ---- training -------------------------------------------------------------------------------
    @classmethod
    def train(cls, text: str | Iterable[str], vocab_size: int, pattern: str = SPLIT_PATTERN) -> "BPETokenizer":
        """Learn ``vocab_size - 256`` merges from ``text`` (a string, or pieces of one, e.g. lines of a
        file). Ties between equally frequent pairs go to the smaller pair of ids, so training is
        deterministic. Stops early when no pair occurs twice: the vocabulary may then be smaller."""
        if not N_BYTES <= vocab_size <= MAX_VOCAB:
            raise ValueError(f"a byte-level BPE vocabulary has at least {N_BYTES} tokens and at most {MAX_VOCAB:,}, "
                             f"got {vocab_size}")
        split = re.compile(known_pattern(pattern))
        counts: Counter[str] = Counter()
        for part in [text] if isinstance(text, str) else text:
            counts.update(split.findall(_check_utf8(part)))
        words = [list(chunk.encode("utf-8")) for chunk in counts]
        freqs = list(counts.values())
        pair_counts: dict[tuple[int, int], int] = defaultdict(int)
        where: dict[tuple[int, int], set[int]] = defaultdict(set)
        for w, (word, freq) in enumerate(zip(words, freqs)):
            for pair in zip(word, word[1:]):
                pair_counts[pair] += freq
                where[pair].add(w)
        heap = [(-count, pair) for pair, count in pair_counts.items()]
        heapq.heapify(heap)
        merges: list[tuple[int, int]] = []
        while len(merges) < vocab_size - N_BYTES and heap:
            negative, pair = heapq.heappop(heap)
            if pair_counts.get(pair) != -negative:
                continue  # a stale entry: the pair's count changed since it was pushed
            if -negative < 2:
                break
            new = N_BYTES + len(merges)
            merges.append(pair)
            touched: set[tuple[int, int]] = set()
            for w in where.pop(pair):
                word, freq = words[w], freqs[w]
                for old in zip(word, word[1:]):
                    pair_counts[old] -= freq
                    touched.add(old)
                word = words[w] = merge_pair(word, pair, new)
                for fresh in zip(word, word[1:]):
                    pair_counts[fresh] += freq
                    where[fresh].add(w)
                    touched.add(fresh)
            del pair_counts[pair]
            touched.discard(pair)
            for p in touched:
                if pair_counts[p] > 0:
                    heapq.heappush(heap, (-pair_counts[p], p))
        return cls(merges, pattern)

    @classmethod
    def from_dict(cls, data: dict) -> "BPETokenizer":
        specials = data.get("specials")
        if not isinstance(data["merges"], list):
            raise ValueError("a BPE tokenizer's merges must be a list")
        return cls(data["merges"], data["pattern"], data.get("byte_ids"), data.get("vocab_size"),
                   {int(k): v for k, v in specials.items()} if isinstance(specials, dict) else None)

    def to_dict(self) -> dict:
        out = {"type": self.type_name, "pattern": self.pattern, "merges": [list(m) for m in self.merges]}
        if not self._identity:
            out["byte_ids"] = self.byte_ids
        if self._size != N_BYTES + len(self.merges) or self.specials:
            out.update(vocab_size=self._size, specials={str(k): v for k, v in self.specials.items()})
        return out

    # ---- the interface --------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._size

    def unknown_chars(self, text: str) -> list[str]:
        """Lone surrogates (e.g. ``"\\ud800"``): Python strings can hold them, UTF-8 cannot."""
        return list(dict.fromkeys(_SURROGATES.findall(text)))

    def clean(self, text: str, policy: str = "strict", replacement: str = "\ufffd") -> str:
        return super().clean(text, policy, replacement)

    def encode(self, text: str, policy: str = "strict") -> list[int]:
        chunks = self._split.findall(self.clean(text, policy))
        cache = self._cache
        if len(cache) > _CACHE_LIMIT:  # a corpus of endless distinct chunks: start the cache afresh
            cache.clear()
        for chunk in set(chunks).difference(cache):
            cache[chunk] = array(_ID_TYPE, self._encode_chunk(chunk.encode("utf-8"))).tobytes()
        ids = array(_ID_TYPE)
        ids.frombytes(b"".join(map(cache.__getitem__, chunks)))
        return ids.tolist()

    def _encode_chunk(self, data: bytes) -> list[int]:
        """Merge the lowest-ranked pair present (the earliest learned), all its occurrences, until none applies."""
        ids, get = (list(data) if self._identity else [self.byte_ids[b] for b in data]), self._ranks.get
        while len(ids) > 1:
            ranks = list(map(get, zip(ids, ids[1:]), repeat(_NOT_MERGED, len(ids) - 1)))
            new = min(ranks)
            if new == _NOT_MERGED:
                break
            i = ranks.index(new)
            if ranks.count(new) == 1:
                ids[i:i + 2] = [new]
            else:
                ids = merge_pair(ids, (ids[i], ids[i + 1]), new)
        return ids

    def token_bytes(self, token: int) -> bytes:
        return self._bytes[int(token)]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; bytes that are not valid UTF-8 (a model can emit any sequence) show as U+FFFD."""
        return b"".join(self._bytes[int(i)] for i in ids).decode("utf-8", errors="replace")

    def piece(self, token: int) -> str:
        """The token's text; a token holding part of a multi-byte character shows its bytes, e.g. ``\\xe2``;
        a special id its name (``<|endoftext|>``)."""
        token = int(token)
        if token in self.specials:
            return self.specials[token]
        return self.token_bytes(token).decode("utf-8", errors="backslashreplace")

    def decode_stream(self, ids: Iterable[int]) -> Iterator[str]:
        """Text as ids arrive, never splitting a multi-byte character: bytes wait until their character is whole."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for i in ids:
            text = decoder.decode(self._bytes[int(i)])
            if text:
                yield text
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail

    def char_counts(self) -> list[int]:
        """Characters each token holds: the bytes of its text that start a UTF-8 character."""
        return [sum(1 for byte in b if byte & 0xC0 != 0x80) for b in self._bytes]


def known_pattern(pattern: str) -> str:
    """The text of one of :data:`PATTERNS`, given by its name or its text; a ValueError for any other."""
    text = PATTERNS.get(pattern, pattern) if isinstance(pattern, str) else pattern
    if text not in PATTERNS.values():
        raise ValueError(f"the splitting pattern {short_repr(pattern, 60)} is not one gptcore knows (its own or "
                         f"GPT-2's): another could drop text or hang on a crafted prompt")
    return text


def _id(value) -> int:
    """An id or size from a file: an integer (not a bool, not a float)."""
    if not is_int(value):
        raise ValueError(f"ids and sizes must be integers, got {short_repr(value, 40)}")
    return value


def _checked_merges(merges) -> list[tuple[int, int]]:
    """Merges as pairs of earlier ids, refused when there are too many or their tokens would hold more than
    MAX_TOKEN_BYTES in all (40 merges that each double the last token would make a terabyte): checked on
    the lengths alone, before any token is built."""
    out: list[tuple[int, int]] = []
    lengths, total = [1] * N_BYTES, N_BYTES
    for rank, pair in enumerate(merges):
        if rank >= MAX_VOCAB - N_BYTES:
            raise ValueError(f"more than {MAX_VOCAB - N_BYTES:,} merges")
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"merge {rank} should be a pair of ids, got {short_repr(pair, 40)}")
        a, b = _id(pair[0]), _id(pair[1])
        if not (0 <= a < N_BYTES + rank and 0 <= b < N_BYTES + rank):
            raise ValueError(f"merge {rank} joins ids ({a}, {b}), but only ids below {N_BYTES + rank} exist then")
        lengths.append(lengths[a] + lengths[b])
        total += lengths[-1]
        if total > MAX_TOKEN_BYTES:
            raise ValueError(f"the merges make tokens of more than {MAX_TOKEN_BYTES:,} bytes in all (merge {rank} "
                             f"alone makes one of {lengths[-1]:,})")
        out.append((a, b))
    return out


def _check_utf8(text: str) -> str:
    bad = _SURROGATES.search(text)
    if bad:
        raise UnknownCharactersError([bad.group()])
    return text
