"""Training throughput of two checkouts of gptcore, side by side: is a change a regression or noise?

    python bench/compare_checkouts.py OLD_DIR NEW_DIR [--pairs 6] [--steps 8] [--repeats 5]

Each measurement runs in a fresh process importing the checkout's own ``gptcore`` (``PYTHONPATH``): full
training steps of the original write-up's model in bfloat16 (``gptcore.experiments.bench``'s
``train_tokens_per_sec``). The pairs alternate which side goes first, so a host that drifts during the
run weighs on both sides alike; the ratio of each pair (new / old) shows the spread a real change must
exceed. Not a test: speed is measured, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

MEASURE = """
import dataclasses, json, statistics, sys, torch
from gptcore.data import Corpus
from gptcore.presets import WRITEUP_MODEL
from gptcore.experiments.bench import train_tokens_per_sec
corpus = Corpus.load()
config = dataclasses.replace(WRITEUP_MODEL, vocab_size=corpus.tokenizer.vocab_size)
rates = train_tokens_per_sec(config, corpus, 32, torch.bfloat16, int(sys.argv[1]), int(sys.argv[2]))
print(json.dumps(statistics.median(rates)))
"""


def measure(checkout: str, steps: int, repeats: int) -> float:
    """Median tokens/s of one fresh process running ``checkout``'s code."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout))
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(steps), str(repeats)], capture_output=True,
                          text=True, env=env, cwd=os.path.abspath(checkout))
    if proc.returncode != 0:
        sys.exit(f"{checkout}: the measurement failed: {proc.stderr.strip().splitlines()[-1:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    pairs = []
    for i in range(args.pairs):
        order = ("old", "new") if i % 2 == 0 else ("new", "old")
        result = {side: measure(getattr(args, side), args.steps, args.repeats) for side in order}
        pairs.append(result)
        print(f"pair {i + 1} ({' first, '.join(order)} second): old {result['old']:,.0f}  new {result['new']:,.0f} "
              f"tokens/s  new/old {result['new'] / result['old']:.3f}", flush=True)
    ratios = [p["new"] / p["old"] for p in pairs]
    print(json.dumps({"old_median": statistics.median(p["old"] for p in pairs),
                      "new_median": statistics.median(p["new"] for p in pairs),
                      "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
