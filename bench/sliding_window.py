"""Sampling speed of a relative-position checkpoint (rope or none): the sliding cache against drop-and-rebuild.

    python bench/sliding_window.py --checkpoint DIR [--repeats 7] [--tokens 1000] [--out bench/sliding_window.json]

Greedy and at temperature 0.8, batch 1, after the first block_size characters of the validation split,
with the checkpoint's n-gram draft; each repeat times both policies back to back (interleaved, so a
change in the host's speed hits both), at the thread count given by torch. Reports medians and the ratio.
The two policies give different texts on purpose: sliding keeps a full window, rebuilding restarts from
three quarters of one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gptcore.checkpoint import load_checkpoint  # noqa: E402
from gptcore.data import Corpus  # noqa: E402
from gptcore.inference.sampling import SamplingParams, stream_tokens  # noqa: E402
from gptcore.storage import write_json  # noqa: E402


def rate(model, prompt, params, draft, slide: bool) -> float:
    t0 = time.perf_counter()
    n = sum(1 for _ in stream_tokens(model, prompt, params, draft=draft, slide=slide))
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--out", default="bench/sliding_window.json")
    args = parser.parse_args()
    ck = load_checkpoint(args.checkpoint)
    if not ck.model.slides:
        raise SystemExit(f"error: {args.checkpoint} has absolute positions: it cannot slide")
    corpus = Corpus.load(args.data, tokenizer=ck.tokenizer)
    block = ck.config.model.block_size
    prompt = ck.tokenizer.encode(ck.tokenizer.decode(corpus.val[:block].tolist()))
    result = {"command": "python bench/" + Path(__file__).name + " " + " ".join(sys.argv[1:]),
              "checkpoint": args.checkpoint, "block_size": block, "new_tokens": args.tokens}
    for name, temperature in (("greedy", 0.0), ("temperature_0.8", 0.8)):
        runs = {"slide": [], "rebuild": []}
        for repeat in range(args.repeats):
            params = SamplingParams(temperature=temperature, max_new_tokens=args.tokens, seed=repeat)
            for policy in ("slide", "rebuild"):
                runs[policy].append(rate(ck.model, prompt, params, ck.draft, policy == "slide"))
        medians = {policy: statistics.median(values) for policy, values in runs.items()}
        result[name] = {"chars_per_sec": runs, "median_slide": medians["slide"],
                        "median_rebuild": medians["rebuild"], "ratio": medians["slide"] / medians["rebuild"]}
        print(f"{name}: slide {medians['slide']:,.0f} chars/s, rebuild {medians['rebuild']:,.0f}: "
              f"{medians['slide'] / medians['rebuild']:.2f}x", flush=True)
    write_json(args.out, result)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
