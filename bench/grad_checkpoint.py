"""Peak memory and step time of training with and without gradient checkpointing, where activations dominate.

    python bench/grad_checkpoint.py [--layers 8] [--heads 8] [--width 512] [--context 1024] [--batch 8]
                                    [--steps 3] [--pairs 1] [--device cpu] [--out bench/grad_checkpoint.json]

Each variant runs in a fresh process (peak memory is per process): a model of that shape, bfloat16
autocast, AdamW, random tokens; the peak is the process's maximum resident memory on a CPU (minus what it
held before the first step) or torch's peak allocation on CUDA; step time is the median of ``--steps``
steps after one warm-up step. ``--pairs N`` measures both variants N times, alternating which goes first,
and reports the time ratio (on/off) of each pair and their median: the host's drift cancels out.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(args) -> dict:
    import torch

    from gptcore.config import ModelConfig, TrainConfig
    from gptcore.device import resolve_device, synchronize
    from gptcore.models import build_model
    from gptcore.training import make_optimizer, train_step

    device = resolve_device(args.device)
    config = ModelConfig(n_layer=args.layers, n_head=args.heads, n_embd=args.width, block_size=args.context, dropout=0.0,
                         grad_checkpoint=args.checkpoint == "on")
    torch.manual_seed(0)
    model = build_model(config).to(device).train()
    optimizer = make_optimizer(model, TrainConfig())
    x = torch.randint(0, config.vocab_size, (args.batch, args.context + 1), device=device)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(args.steps + 1):
        synchronize(device)
        t0 = time.perf_counter()
        train_step(model, optimizer, x[:, :-1], x[:, 1:], torch.bfloat16, 1.0)
        synchronize(device)
        if i:
            times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)
    return {"grad_checkpoint": args.checkpoint, "peak_bytes": peak, "median_step_s": statistics.median(times),
            "step_s": times}


def _variant(name: str) -> dict:
    """One variant measured in a process of its own (peak memory is per process)."""
    child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--checkpoint", name],
                           capture_output=True, text=True, check=True)
    r = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"grad_checkpoint {name}: peak {r['peak_bytes'] / 1e9:.2f} GB, {r['median_step_s']:.2f} s a step", flush=True)
    return r


def _pair(i: int) -> dict:
    """Both variants, the first pair off then on, the next on then off, and so on."""
    order = ("off", "on") if i % 2 == 0 else ("on", "off")
    return {name: _variant(name) for name in order}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="bench/grad_checkpoint.json")
    parser.add_argument("--checkpoint", choices=["on", "off"], help=argparse.SUPPRESS)  # one variant, in a child
    args = parser.parse_args()
    if args.checkpoint:
        print(json.dumps(measure(args)))
        return
    result = {"command": "python bench/grad_checkpoint.py " + " ".join(sys.argv[1:]),
              "shape": {k: getattr(args, k) for k in ("layers", "heads", "width", "context", "batch", "device")},
              "pairs": [_pair(i) for i in range(args.pairs)]}
    result["off"], result["on"] = result["pairs"][0]["off"], result["pairs"][0]["on"]
    result["memory_ratio"] = result["on"]["peak_bytes"] / result["off"]["peak_bytes"]
    result["time_ratios"] = [p["on"]["median_step_s"] / p["off"]["median_step_s"] for p in result["pairs"]]
    result["time_ratio"] = statistics.median(result["time_ratios"])
    from gptcore.storage import write_json

    write_json(args.out, result)
    ratios = ", ".join(f"{r:.2f}" for r in result["time_ratios"])
    print(f"memory x{result['memory_ratio']:.2f}, time x{result['time_ratio']:.2f} (median of the pairs: {ratios}); "
          f"written to {args.out}")


if __name__ == "__main__":
    main()
