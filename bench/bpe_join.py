"""Encoding a corpus with a freshly loaded BPE tokenizer: cached chunks as lists of ids joined in Python (the
earlier way) against packed int32 bytes joined in C (gptcore's), interleaved in one process, one thread.

    python bench/bpe_join.py --data ../shared/data/tinyshakespeare.txt --repeats 9
"""

from __future__ import annotations

import argparse
import statistics
import time
from itertools import chain

from gptcore.tokenizers import BPETokenizer, tokenizer_from_dict


def listed_encode(tokenizer: BPETokenizer, text: str) -> list[int]:
    """The earlier encode: each chunk's ids cached as a list, the lists chained."""
    chunks = tokenizer._split.findall(tokenizer.clean(text))
    cache: dict[str, list[int]] = {}
    for chunk in set(chunks):
        cache[chunk] = tokenizer._encode_chunk(chunk.encode("utf-8"))
    return list(chain.from_iterable(map(cache.__getitem__, chunks)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    text = open(args.data, encoding="utf-8").read()
    saved = BPETokenizer.train(text, 1024).to_dict()
    megabytes = len(text.encode("utf-8")) / 1e6
    ways = {"lists joined in Python": lambda t: listed_encode(t, text), "packed, joined in C": lambda t: t.encode(text)}
    assert ways["lists joined in Python"](tokenizer_from_dict(saved)) == ways["packed, joined in C"](
        tokenizer_from_dict(saved))
    rates: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, encode in ways.items():
            fresh = tokenizer_from_dict(saved)
            start = time.perf_counter()
            encode(fresh)
            rates[name].append(megabytes / (time.perf_counter() - start))
    for name, values in rates.items():
        print(f"{name}: {statistics.median(values):.2f} MB/s median ({min(values):.2f}-{max(values):.2f})")


if __name__ == "__main__":
    main()
