"""Characters against byte-level BPE at several vocabulary sizes: same model, same steps of the same batch
shape, the same validation text, compared in nats per character.

    python bench/tokenizers.py --steps 1000 --threads 1

Each run trains the `seed` recipe (the write-up's model) for ``--steps`` steps of 32x128 tokens into
``runs/tokenizers/<name>``; a run that was interrupted resumes, a finished one is reused. Writes
bench/tokenizers.json: per run the whole-split loss per token and per character, the characters per
token, the parameter count, the wall time, and a sample.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from gptcore.checkpoint import load_checkpoint
from gptcore.data import Corpus, read_corpus, resolve_corpus, split_point
from gptcore.evaluate import nats_per_char, split_loss
from gptcore.inference.sampling import SamplingParams, generate
from gptcore.presets import get_preset
from gptcore.storage import write_json
from gptcore.training import Trainer

ARMS = {"char": {}, "bpe-512": {"bpe_vocab_size": 512}, "bpe-1024": {"bpe_vocab_size": 1024},
        "bpe-2048": {"bpe_vocab_size": 2048}}
SAMPLE_PROMPT = "ROMEO:\n"


def run_arm(name: str, steps: int, threads: int, data: str | None, runs: Path) -> dict:
    overrides = {"max_iters": steps, "warmup_iters": 100, "eval_interval": 250, "sample_interval": 0,
                 "threads": threads, "device": "cpu", **ARMS[name]}
    if name != "char":
        overrides["tokenizer"] = "bpe"
    config = get_preset("seed").with_overrides(overrides)
    out = runs / name
    text = read_corpus(resolve_corpus(data))
    started = time.perf_counter()
    corpus = Corpus.from_text(text, source=str(resolve_corpus(data)), recipe=config.train)
    tokenize_s = time.perf_counter() - started
    metrics_path = out / "metrics.json"
    done = metrics_path.is_file() and json.loads(metrics_path.read_text()).get("status") == "finished"
    if not done:
        Trainer(config, corpus, out, command=f"python bench/tokenizers.py ({name})", resume=True).run(progress_bar=True)
    ck = load_checkpoint(out, "cpu")
    loss = split_loss(ck.model, corpus.val, ck.config.model.block_size)
    metrics = json.loads(metrics_path.read_text())
    sample = generate(ck.model, ck.tokenizer, SAMPLE_PROMPT,
                      SamplingParams(temperature=0.8, max_new_tokens=400, seed=0), draft=ck.draft)
    val_chars = len(text) - split_point(len(text))
    return {
        "tokenizer": name, "vocab_size": ck.tokenizer.vocab_size, "params": metrics["params"],
        "val_loss_per_token": round(loss, 4), "val_nats_per_char": round(nats_per_char(loss, corpus.val, ck.tokenizer), 4),
        "val_tokens": len(corpus.val), "chars_per_token": round(val_chars / len(corpus.val), 3),
        "context_chars": round(ck.config.model.block_size * val_chars / len(corpus.val)),
        "steps": metrics["steps"], "tokens_seen": metrics["tokens_seen"], "wall_time_s": metrics["wall_time_s"],
        "tokenize_s": round(tokenize_s, 2), "sample": SAMPLE_PROMPT + sample[:300],
    }


def format_table(results: dict) -> str:
    """The table and samples of docs/bpe.md, from the results file."""
    lines = ["| tokenizer | vocabulary | parameters | characters a token | context in characters | validation loss "
             "per token | **nats per character** |", "|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        lines.append(f"| {r['tokenizer']} | {r['vocab_size']:,} | {r['params']:,} | {r['chars_per_token']:.2f} | "
                     f"{r['context_chars']} | {r['val_loss_per_token']:.4f} | **{r['val_nats_per_char']:.4f}** |")
    for r in results["runs"]:
        lines += ["", f"{r['tokenizer']}, temperature 0.8, seed 0:", "", "```text", r["sample"], "```"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data")
    parser.add_argument("--arms", nargs="*", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--runs", default="runs/tokenizers")
    parser.add_argument("--out", default="bench/tokenizers.json")
    parser.add_argument("--table", action="store_true", help="print docs/bpe.md's table from --out and stop")
    args = parser.parse_args(argv)
    if args.table:
        print(format_table(json.loads(Path(args.out).read_text())))
        return 0
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.arms:
        rows.append(run_arm(name, args.steps, args.threads, args.data, Path(args.runs)))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "sample"}), flush=True)
    write_json(args.out, {"command": "python " + " ".join(sys.argv), "torch": torch.__version__,
                          "batch": "32 x 128 tokens a step, the `seed` recipe, warmup 100",
                          "val_loss_definition": "whole validation split (the last 10% of the characters); "
                                                 "nats per character = total nats / characters predicted",
                          "runs": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
