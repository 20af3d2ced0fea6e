"""Peak memory of one attention layer's forward and backward pass, explicit against tiled, as the context grows.

    python bench/flash_memory.py --lengths 256 512 1024 2048 4096 8192 --train-rounds 3

Each (path, length) runs in a fresh process, at one thread, in float32: batch 1, 4 heads of 64, the
queries, keys and values made first; the figure is the growth of the process's peak resident memory
during one forward and backward pass (what the pass itself needs), with its wall time. Then, at the
contexts we train, whole training steps of the write-up's model (batch 32x128, bfloat16) with each
attention path, the paths taking turns for ``--train-rounds`` rounds. Writes bench/flash_memory.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

HEADS, HEAD_DIM = 4, 64


def measure(path: str, length: int) -> dict:
    """Run in the child process: one forward and backward pass, with the peak memory it added."""
    import torch

    from gptcore.models.attention import attend

    torch.set_num_threads(1)
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, HEADS, length, HEAD_DIM, requires_grad=True) for _ in range(3))
    grad = torch.randn(1, HEADS, length, HEAD_DIM)
    for _ in range(2):  # the first pass of a process loads code and sets up the allocator: not what is measured
        small = [torch.randn(1, HEADS, 64, HEAD_DIM, requires_grad=True) for _ in range(3)]
        attend(*small, path).backward(torch.randn(1, HEADS, 64, HEAD_DIM))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    attend(q, k, v, path).backward(grad)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"path": path, "length": length, "peak_mb": round((peak - before) / 1024, 1), "seconds": round(seconds, 3)}


def training_speed(rounds: int, data: str | None) -> dict:
    """Median tokens/s of training steps of the write-up's model with each attention path, taking turns."""
    import dataclasses
    import statistics

    import torch

    from gptcore.data import Corpus
    from gptcore.experiments.bench import train_tokens_per_sec
    from gptcore.presets import WRITEUP_MODEL

    corpus = Corpus.load(data)
    rates: dict[str, list[float]] = {"explicit": [], "tiled": [], "fused": []}
    for _ in range(rounds):
        for path in rates:
            config = dataclasses.replace(WRITEUP_MODEL, attention=path)
            rates[path] += train_tokens_per_sec(config, corpus, 32, torch.bfloat16, steps=3, repeats=1)
    medians = {path: statistics.median(r) for path, r in rates.items()}
    print(json.dumps(medians), flush=True)
    return {"model": "the write-up's (4x4x256, block 128, dropout 0.2), batch 32, bfloat16 autocast",
            "threads": torch.get_num_threads(), "tokens_per_sec": rates, "median_tokens_per_sec": medians}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192])
    parser.add_argument("--train-rounds", type=int, default=3)
    parser.add_argument("--data", help="the corpus for the training steps (default: as for gptcore train)")
    parser.add_argument("--out", default="bench/flash_memory.json")
    parser.add_argument("--child", nargs=2, metavar=("PATH", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]))))
        return 0
    rows = []
    for length in args.lengths:
        for path in ("explicit", "tiled"):
            done = subprocess.run([sys.executable, __file__, "--child", path, str(length)], capture_output=True,
                                  text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            rows[-1]["scores_mb"] = round(HEADS * length * length * 4 / 2**20, 1)  # one T x T float32 matrix
            print(json.dumps(rows[-1]), flush=True)
    from gptcore.storage import write_json
    write_json(args.out, {"command": "python " + " ".join(["bench/flash_memory.py", *sys.argv[1:]]),
                          "setup": f"batch 1, {HEADS} heads of {HEAD_DIM}, float32, CPU, 1 thread, "
                                   "forward + backward, each in a fresh process",
                          "rows": rows, "training": training_speed(args.train_rounds, args.data)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
