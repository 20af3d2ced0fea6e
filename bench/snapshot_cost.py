"""What recording snapshots (gptcore.snapshots) costs a training run, side by side with the same run without.

    python bench/snapshot_cost.py [--pairs 3] [--quick-steps 500] [--seed-steps 100] [--interval 50]
                                  [--threads 1] [--out bench/snapshot_cost.json]

Two configs (``--configs``): ``quick``, the app's Train tab default (its quick model, snapshots every 50 steps
as the app takes them), and ``seed``, the preset (the original write-up's model and recipe). For each, ``--pairs`` pairs of runs on
Tiny Shakespeare, with and without snapshots, alternating which goes first; the training time of a run is the
elapsed time at its last step (the snapshot at step 0 included, evaluations kept out of the run), and the cost
is the median of the pairs' ratios minus one. Also each snapshot's own time (the median of the run's
snapshots, measured again on the trained model) against the time of the ``--interval`` steps it follows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def configs(args) -> dict:
    from demo.tabs.train import QUICK, app_presets
    from gptcore.presets import get_preset

    off = {"sample_interval": 0, "threads": args.threads, "time_budget": None}
    quick = app_presets()[QUICK][1].with_overrides({**off, "max_iters": args.quick_steps,
                                                     "eval_interval": args.quick_steps})
    seed = get_preset("seed").with_overrides({**off, "max_iters": args.seed_steps, "eval_interval": args.seed_steps})
    return {"quick": quick, "seed": seed}


def timed_run(config, corpus, interval: int) -> float:
    """Seconds of training up to the last step of one run (snapshots every ``interval`` steps, or none)."""
    from gptcore.training import Trainer

    last = {}
    with tempfile.TemporaryDirectory() as out:
        run = Trainer(config.with_overrides({"snapshot_interval": interval}), corpus, Path(out) / "run")
        run.run(on_event=lambda e: last.update(elapsed=e.elapsed) if e.kind == "step" else None)
    return last["elapsed"]


def snapshot_seconds(config, corpus, repeats: int = 5) -> float:
    from gptcore import snapshots
    from gptcore.models import build_model

    model = build_model(dataclasses.replace(config.model, vocab_size=corpus.tokenizer.vocab_size))
    kept = snapshots.begin(model, corpus.tokenizer, corpus.val, 1)
    times = []
    for step in range(repeats):
        t0 = time.perf_counter()
        kept.take(model, step)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(name: str, config, corpus, args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    pairs = []
    for k in range(args.pairs):
        order = [args.interval, 0] if k % 2 == 0 else [0, args.interval]
        got = {interval: timed_run(config, corpus, interval) for interval in order}
        pairs.append({"with": round(got[args.interval], 3), "without": round(got[0], 3),
                      "ratio": round(got[args.interval] / got[0], 4)})
        print(f"{name}: pair {k + 1}: {pairs[-1]}", file=sys.stderr)
    steps = config.train.max_iters
    step_s = statistics.median(p["without"] for p in pairs) / steps
    shot_s = snapshot_seconds(config, corpus)
    return {"steps": steps, "interval": args.interval, "pairs": pairs,
            "median_ratio": statistics.median(p["ratio"] for p in pairs),
            "seconds_per_step": round(step_s, 5), "seconds_per_snapshot": round(shot_s, 5),
            "snapshot_share_at_interval": round(shot_s / (args.interval * step_s), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--quick-steps", type=int, default=500)
    parser.add_argument("--seed-steps", type=int, default=100)
    parser.add_argument("--interval", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--configs", default="quick,seed", help="which to measure: quick (the app's default "
                        "run), seed (the preset); the others' results already in --out are kept")
    parser.add_argument("--out", default=str(ROOT / "bench" / "snapshot_cost.json"))
    args = parser.parse_args(argv)
    import torch

    from gptcore.data import Corpus

    corpus = Corpus.load()
    wanted = [name.strip() for name in args.configs.split(",") if name.strip()]
    every = configs(args)
    if set(wanted) - set(every):
        parser.error(f"--configs takes {', '.join(every)}")
    path = Path(args.out)
    results = json.loads(path.read_text())["results"] if path.is_file() else {}
    command = "python bench/snapshot_cost.py " + " ".join(sys.argv[1:] if argv is None else argv)
    for name in wanted:
        results[name] = {**measure(name, every[name], corpus, args), "command": command, "torch": torch.__version__,
                         "threads": args.threads}
    path.write_text(json.dumps({"results": results}, indent=2) + "\n")
    for name, r in results.items():
        print(f"{name}: {r['median_ratio']:.3f}x with snapshots every {r['interval']} steps; one snapshot "
              f"{r['seconds_per_snapshot'] * 1000:.0f} ms against {r['interval']} steps of "
              f"{r['seconds_per_step'] * 1000:.0f} ms ({r['snapshot_share_at_interval']:.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
