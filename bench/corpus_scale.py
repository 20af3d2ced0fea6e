"""Training on corpora larger than memory: prepare speed, training speed with 1 and 2 processes, and the
training process's peak memory against the corpus size.

    python bench/corpus_scale.py --sizes-mb 10 100 1000 --work runs/corpus-scale

There is no network here, so the corpus is built from text already on the machine: the Python standard
library's and the installed packages' sources and documentation (.py, .rst, .txt, .md), concatenated in
a fixed order up to 100 MB; the 1 GB corpus is that text repeated (what is measured is memory and speed,
which do not depend on repetition). Nothing of it is committed. Each corpus is prepared with
``gptcore prepare`` (BPE, 1,024 tokens learned from its first 20 MB), then the write-up's model trains
from its shards for ``--steps`` steps, each run in a fresh process at one thread, whose peak resident
memory is read from the operating system. Writes bench/corpus_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

SUFFIXES = (".py", ".rst", ".txt", ".md")
ROOT = Path(__file__).resolve().parents[1]


def build_corpus(path: Path, megabytes: float) -> Path:
    """``megabytes`` of local text at ``path`` (made once): the library sources, repeated if needed."""
    want = int(megabytes * 1e6)
    if path.is_file() and path.stat().st_size == want:
        return path
    base = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in base.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path, "wb") as out:
        while written < want:
            for f in files:
                try:
                    data = f.read_bytes()
                except OSError:
                    continue
                data = data[: want - written]
                out.write(data)
                written += len(data)
                if written >= want:
                    break
    return path


def measured(args: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """Run ``python -m gptcore ARGS`` in a child that reports the child's own peak resident memory."""
    wrapper = [sys.executable, __file__, "--child", "--", sys.executable, "-m", "gptcore", *args]
    start = time.perf_counter()
    proc = subprocess.run(wrapper, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"gptcore {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    *lines, last = proc.stdout.strip().splitlines()
    return time.perf_counter() - start, int(json.loads(last)["peak_rss_bytes"]), "\n".join(lines)


def child(command: list[str]) -> int:
    """Run ``command`` and print its output, then its peak resident memory (from wait4) as a JSON line."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    sys.stdout.write(out)
    print(json.dumps({"peak_rss_bytes": usage.ru_maxrss * 1024}))
    return os.waitstatus_to_exitcode(status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--work", default="runs/corpus-scale")
    parser.add_argument("--out", default="bench/corpus_scale.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("command", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.command)
    work = Path(args.work)
    train_settings = ["--preset", "seed", "--device", "cpu", "--max-iters", str(args.steps), "--quiet",
                      "--set", "threads=1", "--set", "eval_windows=8", "--set", f"eval_interval={args.steps}",
                      "--set", "sample_interval=0", "--set", "final_eval_tokens=100000"]
    rows = []
    for mb in args.sizes_mb:
        text = build_corpus(work / f"text-{mb:g}mb.txt", mb)
        shards = work / f"shards-{mb:g}mb"
        wall, rss, out = measured(["prepare", "--input", str(text), "--tokenizer", "bpe", "--vocab-size", "1024",
                                   "--out", str(shards), "--quiet"])
        prepared = json.loads(out.splitlines()[-1])
        row = {"corpus_mb": mb, "prepare_s": round(wall, 1), "prepare_mb_s": round(mb / wall, 2),
               "prepare_peak_rss_mb": round(rss / 2**20), "train_tokens": prepared["train_tokens"],
               "val_tokens": prepared["val_tokens"]}
        wall, rss, out = measured(["train", *train_settings, "--data", str(shards), "--out", str(work / f"run-{mb:g}mb")])
        result = json.loads(out.splitlines()[-1])
        row.update(train_peak_rss_mb=round(rss / 2**20), train_wall_s=round(wall, 1),
                   train_tokens_per_sec=round(result["tokens_seen"] / result["wall_time_s"]))
        rows.append(row)
        print(json.dumps(row), flush=True)
    # 1 and 2 processes on the largest corpus, same global batch (32 sequences a step)
    shards = work / f"shards-{args.sizes_mb[-1]:g}mb"
    speeds = {}
    for label, launcher, extra in [
        ("1 process, 1 thread", ["-m", "gptcore"], []),
        ("1 process, 2 threads", ["-m", "gptcore"], ["--set", "threads=2"]),
        ("2 processes x 1 thread (torchrun, DDP)", ["-m", "torch.distributed.run", "--nproc_per_node=2",
                                                   "-m", "gptcore"], ["--set", "batch_size=16"])]:
        out_dir = work / f"speed-{len(speeds)}"
        cmd = [sys.executable, *launcher, "train", *train_settings, *extra, "--data", str(shards), "--out", str(out_dir)]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if proc.returncode != 0:
            raise RuntimeError(f"{label} failed:\n{proc.stderr[-2000:]}")
        result = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
        speeds[label] = round(result["tokens_seen"] / result["wall_time_s"])
        print(json.dumps({label: speeds[label]}), flush=True)
    from gptcore.storage import write_json
    write_json(args.out, {"command": "python bench/corpus_scale.py " + " ".join(argv or sys.argv[1:]),
                          "corpus": "Python standard library and site-packages sources and docs, repeated past 100 MB",
                          "model": "the write-up's (seed preset), batch 32x128, bfloat16, CPU", "steps": args.steps,
                          "sizes": rows, "train_tokens_per_sec_by_processes": speeds})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
