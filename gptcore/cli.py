"""Command line: ``gptcore`` (or ``python -m gptcore``) with one subcommand per job.

Errors from bad input print one line (``error: ...``) and exit non-zero, never a traceback.
This is the only place where settings arrive as ``key=value`` strings; they become typed values at once.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from .errors import GptcoreError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise SystemExit(_fail(f"{self.prog}: {message}", code=2))


def _fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


DEVICE_HELP = "auto (CUDA, then Apple MPS, then CPU; the default), cpu, cuda, cuda:N or mps"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gptcore", description="A GPT written from scratch: train, evaluate, sample, benchmark.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(sub)
    _add_eval(sub)
    _add_sample(sub)
    _add_draft(sub)
    _add_presets(sub)
    _add_prepare(sub)
    _add_import_nanogpt(sub)
    _add_ablate(sub)
    _add_bench(sub)
    return parser


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model from a preset")
    p.add_argument("--preset", required=True, help="preset name (see `presets`)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--data", help="corpus path (default: $GPTCORE_DATA, else download Tiny Shakespeare)")
    p.add_argument("--max-iters", type=int)
    p.add_argument("--time-budget", type=float, metavar="SECONDS")
    p.add_argument("--seed", type=int)
    p.add_argument("--snapshots", type=int, metavar="N", help="record what the model does on a probe text every "
                   "N steps, for the app's replay (snapshots.pt beside the checkpoint)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint's saved state")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--device", help=f"where to train (the preset's device setting unless given): {DEVICE_HELP}")


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="whole-split validation loss of a checkpoint, as JSON")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate text from a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--prompt", default="")
    p.add_argument("--max-new-tokens", type=int, default=500)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--unknown", choices=["strict", "replace", "drop"], default="strict",
                   help="what to do with prompt characters outside the vocabulary")
    p.add_argument("--no-draft", action="store_true",
                   help="one token per pass of the model, ignoring the checkpoint's n-gram draft (same text, slower)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


def _add_draft(sub) -> None:
    p = sub.add_parser("draft", help="fit the n-gram table that speeds up sampling and store it in a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", help="corpus whose training split is counted (default as for train)")
    p.add_argument("--order", type=int, default=5, help="longest context counted, in tokens")


def _add_presets(sub) -> None:
    sub.add_parser("presets", help="list presets")


def _add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="tokenize a corpus of any size once, into token shards that train --data reads")
    p.add_argument("--input", required=True, nargs="+", help="text files, globs or directories (searched "
                   "recursively), or hf:NAME for a Hugging Face dataset, streamed (needs the datasets library)")
    p.add_argument("--hf-split", default="train", help="with an hf: input: the split to read")
    p.add_argument("--hf-field", default="text", help="with an hf: input: the field holding the text")
    p.add_argument("--tokenizer", default="bpe", help="char, bpe (learned from the corpus), or a tokenizer.json")
    p.add_argument("--vocab-size", type=int, default=4096, help="with --tokenizer bpe: the vocabulary to learn")
    p.add_argument("--bpe-sample-mb", type=float, default=20.0, help="with --tokenizer bpe: MB of text it learns from")
    p.add_argument("--shard-tokens", type=int, default=1 << 24, help="tokens per training shard")
    p.add_argument("--out", required=True, help="the directory of shards (rerun the same command to continue it)")
    p.add_argument("--quiet", action="store_true")


def _add_import_nanogpt(sub) -> None:
    p = sub.add_parser("import-nanogpt", help="turn a nanoGPT ckpt.pt (and its meta.pkl) into a gptcore checkpoint")
    p.add_argument("ckpt", help="nanoGPT's ckpt.pt")
    p.add_argument("--meta", help="nanoGPT's meta.pkl (the character vocabulary; default: beside ckpt.pt)")
    p.add_argument("--gpt2-vocab", help="for nanoGPT's GPT-2 runs: a directory with GPT-2's encoder.json and vocab.bpe")
    p.add_argument("--out", required=True, help="the gptcore checkpoint directory to write")


def _add_ablate(sub) -> None:
    p = sub.add_parser("ablate", help="run an ablation study (all arms x seeds) into a results JSON")
    p.add_argument("--study", required=True, help="study name, or 'all'")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default="checkpoints/ablations", help="directory of <study>.json results")
    p.add_argument("--data")
    p.add_argument("--max-iters", type=int, help="the step budget of every run (default 150)")
    p.add_argument("--threads", type=int, help="torch threads per run (1 for background studies)")
    p.add_argument("--max-seeds", type=int, help="add seeds, one at a time, to the arms of comparisons whose "
                   "verdict is unsettled (Welch's p between 0.01 and 0.2), up to this many")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--keep-models", action="store_true", help="keep each arm's first-seed model (float16) in "
                   "<out>/models/, training that seed again where the results hold it without its weights")
    p.add_argument("--step-cost", action="store_true", help="instead of training: measure each arm's seconds per "
                   "step on this machine (at --threads) into <out>/<study>.step_cost.json, for the equal-time view")
    p.add_argument("--summary", action="store_true", help="instead of training: print the Markdown table and "
                   "verdicts of the results already in <out> (the tables of docs/ablations.md)")
    p.add_argument("--against", action="append", default=[], metavar="DIR", help="with --summary: also compare "
                   "each comparison's verdict with the same study's results in DIR (another budget); repeatable")


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="speed benchmark: training tokens/s, time to loss, sampling chars/s")
    p.add_argument("--checkpoint", default="checkpoints/shakespeare-char")
    p.add_argument("--data")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="bench/results.json")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for tests")
    p.add_argument("--runs", nargs="*", metavar="PRESET", help="also time whole `train --preset` commands, process start to exit "
                   "(name a preset N times to run it N times)")
    p.add_argument("--device", default="auto", help="the CPU figures always; a GPU section too when this resolves "
                   f"to a GPU: {DEVICE_HELP}")


def cmd_train(args) -> int:
    from .config import parse_assignments
    from .data import Corpus
    from .memory import check_fits
    from .presets import get_preset
    from .storage import check_output_dir
    from .training import Trainer

    overrides = parse_assignments(args.set)
    for key, value in (("max_iters", args.max_iters), ("time_budget", args.time_budget), ("seed", args.seed),
                       ("device", args.device), ("snapshot_interval", args.snapshots)):
        if value is not None:
            overrides[key] = value
    config = get_preset(args.preset).with_overrides(overrides)
    check_output_dir(args.out)
    check_fits(config, config.train.device)
    corpus = Corpus.load(args.data, recipe=config.train)
    command = "python -m gptcore " + shlex.join(sys.argv[1:])
    trainer = Trainer(config, corpus, args.out, command=command, resume=args.resume)
    _interrupt_on_signals()
    try:
        result = trainer.run(progress_bar=not args.quiet)
    except KeyboardInterrupt:
        where = (f"the last evaluated checkpoint is in {args.out}; continue with --resume"
                 if trainer.state_path.exists() else "no checkpoint was saved yet")
        raise SystemExit(_fail(f"interrupted: {where}", code=130)) from None
    if not trainer.group.is_main:  # under torchrun, rank 0 speaks for the run
        return 0
    print(json.dumps({"out": str(result.out_dir), "val_loss": round(result.val_loss, 4),
                      "val_nats_per_char": round(result.val_nats_per_char, 4), "params": result.params,
                      "steps": result.steps, "best_step": result.best_step, "tokens_seen": result.tokens_seen,
                      "wall_time_s": round(result.wall_time, 1), "stopped": result.stopped}))
    return 0


def _interrupt_on_signals() -> None:
    """Ctrl-C and a termination request both stop training as an interrupt (the last evaluated checkpoint
    kept, the message saying where), even when the process inherited SIGINT as ignored, as a job started in
    the background by a non-interactive shell does: Python then installs no handler of its own."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return  # main() called from a thread (a test, a notebook): signals are the caller's to handle
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)


def cmd_eval(args) -> int:
    from .checkpoint import load_checkpoint
    from .data import Corpus
    from .device import describe
    from .evaluate import nats_per_char, split_loss
    from .models import count_parameters

    ck = load_checkpoint(args.checkpoint, args.device)
    corpus = Corpus.load(args.data, tokenizer=ck.tokenizer)
    val = split_loss(ck.model, corpus.val, ck.config.model.block_size)
    print(json.dumps({"checkpoint": str(ck.path), "val_loss": round(val, 4),
                      "val_nats_per_char": round(nats_per_char(val, corpus.val, ck.tokenizer), 4),
                      "params": count_parameters(ck.model), "tokenizer": ck.tokenizer.type_name,
                      "val_tokens": len(corpus.val), "corpus": corpus.source, "device": describe(ck.device)}))
    return 0


def cmd_sample(args) -> int:
    from .checkpoint import load_checkpoint
    from .inference.sampling import SamplingParams, stream_text

    params = SamplingParams(args.temperature, args.top_k, args.top_p, args.max_new_tokens, args.seed).validate()
    ck = load_checkpoint(args.checkpoint, args.device)
    ck.tokenizer.clean(args.prompt, args.unknown)  # fail before printing anything
    sys.stdout.write(args.prompt)
    draft = None if args.no_draft else ck.draft
    for piece in stream_text(ck.model, ck.tokenizer, args.prompt, params, policy=args.unknown, draft=draft):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def cmd_draft(args) -> int:
    from .checkpoint import load_checkpoint, save_draft
    from .data import Corpus
    from .inference.draft import NgramDraft, check_order
    from .storage import check_output_dir

    ck = load_checkpoint(args.checkpoint)
    check_order(args.order, ck.tokenizer.vocab_size)
    check_output_dir(ck.path, "--checkpoint")
    corpus = Corpus.load(args.data, tokenizer=ck.tokenizer)
    draft = NgramDraft.fit(corpus.train, ck.tokenizer.vocab_size, args.order)
    save_draft(ck.path, draft)
    print(json.dumps({"checkpoint": str(ck.path), "order": args.order, "contexts": len(draft),
                      "corpus": corpus.source}))
    return 0


def cmd_prepare(args) -> int:
    from .prepare import PrepareConfig, prepare

    config = PrepareConfig(tuple(args.input), args.tokenizer, args.vocab_size, args.bpe_sample_mb, args.shard_tokens,
                           args.hf_split, args.hf_field)
    manifest = prepare(config, args.out, progress=not args.quiet)
    print(json.dumps({"out": args.out, "tokenizer": manifest["tokenizer_type"], "vocab_size": manifest["vocab_size"],
                      "train_tokens": manifest["tokens"]["train"], "val_tokens": manifest["tokens"]["val"],
                      "shards": len(manifest["shards"]), "bytes": manifest["bytes_done"]}))
    return 0


def cmd_import_nanogpt(args) -> int:
    from .checkpoint import load_checkpoint
    from .interop.nanogpt import import_nanogpt
    from .models import count_parameters
    from .storage import check_output_dir

    check_output_dir(args.out)
    out = import_nanogpt(args.ckpt, args.out, args.meta, args.gpt2_vocab)
    ck = load_checkpoint(out)
    source = ck.metrics["imported_from"]["nanogpt"]
    print(json.dumps({"out": str(out), "params": count_parameters(ck.model),
                      "vocab_size": ck.tokenizer.vocab_size, "iter_num": source["iter_num"],
                      "nanogpt_best_val_loss": source["best_val_loss"],
                      "next": f"gptcore eval --checkpoint {out}; gptcore draft --checkpoint {out} (faster sampling)"}))
    return 0


def cmd_presets(args) -> int:
    from .presets import PRESETS

    for name, (note, _) in PRESETS.items():
        print(f"{name:18s} {note}")
    return 0


def cmd_ablate(args) -> int:
    if args.summary:
        from .experiments.ablate import resolve_studies
        from .experiments.ablation_results import load_results, summarize, verdicts_across_budgets

        for study in resolve_studies(args.study):
            path = Path(args.out) / f"{study.name}.json"
            if path.exists() or args.study != "all":
                results = load_results(path)
                print(summarize(results) + "\n")
                from .experiments.wallclock import equal_time_markdown

                print(equal_time_markdown(Path(args.out), results) + "\n")
                others = [Path(d) / f"{study.name}.json" for d in args.against]
                others = [load_results(p) for p in others if p.exists() or args.study != "all"]
                if others:
                    print("Verdicts at each budget:\n\n" + verdicts_across_budgets([results, *others]) + "\n")
        return 0
    if args.step_cost:
        from .data import Corpus
        from .experiments.wallclock import run_step_cost
        from .storage import check_output_dir

        _ablate_options(args).check_counts()
        check_output_dir(args.out)
        command = f"python -m gptcore ablate --study {args.study} --step-cost --threads {args.threads or 1}"
        for path in run_step_cost(args.study, Corpus.load(args.data), args.out, args.threads or 1, args.device,
                                  command):
            print(f"wrote {path}")
        return 0
    from .experiments.ablate import run_ablations

    return run_ablations(_ablate_options(args))


def _ablate_options(args):
    from .experiments.ablate import AblateOptions

    return AblateOptions(study=args.study, seeds=args.seeds, out=args.out, data=args.data, max_iters=args.max_iters,
                         threads=args.threads, max_seeds=args.max_seeds, quiet=args.quiet, device=args.device,
                         keep_models=args.keep_models)


def cmd_bench(args) -> int:
    from .experiments.bench import BenchOptions, run_bench

    return run_bench(BenchOptions(checkpoint=args.checkpoint, data=args.data, repeats=args.repeats, out=args.out,
                                  quick=args.quick, runs=tuple(args.runs or ()), device=args.device))


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "draft": cmd_draft, "presets": cmd_presets,
            "import-nanogpt": cmd_import_nanogpt, "prepare": cmd_prepare,
            "ablate": cmd_ablate, "bench": cmd_bench}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # here, so that a reader gone away is caught below, not at interpreter exit
        return code
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    except (GptcoreError, ValueError) as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted", code=130)
    except BrokenPipeError:  # the reader went away (`gptcore ... | head`): nothing more to say, to no one
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
