"""Peak memory of one attention layer's forward and backward pass, explicit against tiled, as the context grows.

    python bench/flash_memory.py --lengths 256 512 1024 2048 4096 8192

Each (path, length) runs in a fresh process, at one thread, in float32: batch 1, 4 heads of 64, the
queries, keys and values made first; the figure is the growth of the process's peak resident memory
during one forward and backward pass (what the pass itself needs), with its wall time. Writes
bench/flash_memory.json.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192])
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
                          "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
