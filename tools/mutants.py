"""Plant known bugs one at a time and check that a test catches each: ``python tools/mutants.py [NAME ...]``.

Each mutant replaces one snippet of the code, runs the tests that guard it, and restores the file
(whatever happens). A mutant whose snippet is no longer in its file is reported as GONE, by name, so
that a refactoring cannot silently retire it; a mutant no test fails on is NOT CAUGHT. The exit status
is 0 only when every mutant ran and was caught. Not a test: pytest does not collect ``tools/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOP, ATTENTION, GPT = "gptcore/training/loop.py", "gptcore/models/attention.py", "gptcore/models/gpt.py"
RESUMED = '        if st.cuda_rng is not None and self.device.type == "cuda":'


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # relative to the repository root
    old: str  # the snippet as it is in the code (its first occurrence is replaced)
    new: str  # the bug
    tests: tuple[str, ...]  # pytest arguments: files, node ids, or "-k" and an expression


MUTANTS = [
    Mutant("keep latest instead of best", LOOP, "        if val < st.best_val:", "        if True:",
           ("tests/test_promises.py",)),
    Mutant("no time-budget pacing", LOOP,
           "        if tc.time_budget:\n            progress = max(progress, elapsed / tc.time_budget)", "        pass",
           ("tests/test_promises.py",)),
    Mutant("resume resets best_val", LOOP, RESUMED, "        st.best_val = float('inf')\n" + RESUMED,
           ("tests/test_promises.py",)),
    Mutant("resume resets elapsed", LOOP, RESUMED, "        st.elapsed = 0.0\n" + RESUMED, ("tests/test_promises.py",)),
    Mutant("resume resets history", LOOP, RESUMED, "        st.history = []\n" + RESUMED, ("tests/test_promises.py",)),
    Mutant("save in place, no staging", "gptcore/storage.py",
           "        atomic_write_bytes(directory / _STAGED.format(name), data)",
           "        atomic_write_bytes(directory / name, data)\n"
           "        atomic_write_bytes(directory / _STAGED.format(name), data)", ("tests/test_checkpoint.py",)),
    Mutant("fused dropout in eval", ATTENTION, "self.dropout if self.training else 0.0", "self.dropout",
           ("tests/test_model.py",)),
    Mutant("explicit skips attention dropout", ATTENTION,
           "self.dropout if self.training else 0.0, self.attn_dropout, attn_out,",
           "self.dropout if self.training else 0.0, None, attn_out,", ("tests/test_model.py",)),
    Mutant("verdict on the median", "gptcore/experiments/bench.py",
           'run["max_val_loss"] <= max_loss and run["max_wall_s"] <= max_wall',
           'run["val_loss"] <= max_loss and run["wall_s"] <= max_wall', ("tests/test_bench.py",)),
    Mutant("not run shown as not met", "gptcore/experiments/bench.py",
           '    if run is None:\n        return "not run"', "    if run is None:\n        return _mark(False)",
           ("tests/test_bench.py",)),
    # the planted bugs that no test caught before tests were written for them
    Mutant("rotary positions applied to the values too", ATTENTION,
           "    return q, k, v\n\n\ndef scaled_scores",
           "    v = rotate(v, *rope) if rope is not None else v\n    return q, k, v\n\n\ndef scaled_scores",
           ("tests/test_model.py", "-k", "rope")),
    Mutant("rope_base ignored", GPT,
           "rope_tables(0, config.block_size, config.n_embd // config.n_head, config.rope_base)",
           "rope_tables(0, config.block_size, config.n_embd // config.n_head, 10000.0)",
           ("tests/test_model.py", "-k", "rope")),
    Mutant("gradient checkpointing silently off", GPT,
           "recompute = self.config.grad_checkpoint and torch.is_grad_enabled()",
           "recompute = False and torch.is_grad_enabled()", ("tests/test_model.py", "-k", "checkpointing")),
    Mutant("BPE trained on the validation text too", "gptcore/data.py",
           "BPETokenizer.train(text[:split_point(len(text))], recipe.bpe_vocab_size)",
           "BPETokenizer.train(text, recipe.bpe_vocab_size)", ("tests/test_data.py",)),
    Mutant("prepare's BPE sample includes validation pieces", "gptcore/prepare.py",
           "                if not _is_val(i):\n                    seen += n",
           "                if True:\n                    seen += n", ("tests/test_prepare.py",)),
    Mutant("batch sampler's last start off by one", "gptcore/data.py",
           "torch.randint(len(self.data) - self.block_size, ",
           "torch.randint(len(self.data) - self.block_size + 1, ", ("tests/test_data.py",)),
    Mutant("an untied nanoGPT head imported as tied", "gptcore/interop/nanogpt.py",
           "        config = dataclasses.replace(config, tie_embeddings=False)", "        pass",
           ("tests/test_nanogpt.py",)),
    Mutant("equal-time view reads an arm's longest seed", "gptcore/experiments/wallclock.py",
           'min(r["curve"][-1]["step"] for r in a["runs"])', 'max(r["curve"][-1]["step"] for r in a["runs"])',
           ("tests/test_wallclock.py",)),
    Mutant("memory estimate leaves out the Adam moments", "gptcore/memory.py",
           "FLOAT_BYTES * (4 * params + activations)", "FLOAT_BYTES * (2 * params + activations)",
           ("tests/test_hostile.py", "-k", "estimate")),
    Mutant("the app's form accepts sizes past its maxima", "demo/tabs/train.py",
           'checked_number("n_embd", n_embd, 1, limits.max_n_embd, integer=True)',
           'checked_number("n_embd", n_embd, 1, 2 * limits.max_n_embd, integer=True)',
           ("tests/test_demo_train.py", "-k", "maximum or bad_forms")),
    Mutant("an infinite loss is not a divergence", LOOP, "        if not math.isfinite(value):",
           "        if math.isnan(value):", ("tests/test_hostile.py", "-k", "non_finite")),
    Mutant("a manifest whose sha256 is not checked", "gptcore/storage.py",
           "            if _sha256_file(candidate) == digest:", "            if candidate.exists():",
           ("tests/test_checkpoint.py",)),
    Mutant("train without its own signal handling", "gptcore/cli.py", "    _interrupt_on_signals()\n    try:",
           "    try:", ("tests/test_cli.py", "-k", "interrupted and SIGTERM")),
    Mutant("each process keeps its own clock", "gptcore/training/distributed.py",
           "        return float(value[0]), bool(value[1])", "        return seconds, bool(value[1])",
           ("tests/test_distributed.py", "-k", "time_budget")),
    Mutant("a zip's '..' entries not checked", "demo/server/uploads.py", ' or ".." in parts or ', " or ",
           ("tests/test_demo_models.py", "-k", "hostile")),
    Mutant("an upload checked without limits", "demo/server/upload_child.py",
           '    _limit_self(request["memory_bytes"], request["cpu_seconds"])', "    pass",
           ("tests/test_demo_models.py", "-k", "child")),
    Mutant("Stop waits in the queue", "demo/tabs/train.py", 'api_name="train_stop", queue=False)',
           'api_name="train_stop")', ("tests/test_demo_train.py", "-k", "crowd")),
    Mutant("the Ablations tab's command names only the folder", "demo/tabs/ablations.py",
           "        return str(directory.resolve().relative_to(REPO_ROOT))", "        return directory.name",
           ("tests/test_demo_ablations.py", "-k", "equal_wall_clock")),
    Mutant("the Ablations tab's table keeps server paths", "demo/tabs/ablations.py",
           "without_paths(study_notes(source, results)), without_paths(table)",
           "study_notes(source, results), table", ("tests/test_demo_ablations.py", "-k", "equal_wall_clock")),
    # snapshots, the replay and the comparison
    Mutant("a resumed run keeps snapshots ahead of its state", "gptcore/snapshots.py",
           "        self.taken = [s for s in self.taken if s.step <= step]", "        pass",
           ("tests/test_snapshots.py", "-k", "resumed")),
    Mutant("snapshots thinned without doubling the interval", "gptcore/snapshots.py",
           "            self.interval *= 2\n", "", ("tests/test_snapshots.py", "-k", "full")),
    Mutant("a snapshot taken with dropout on", "gptcore/snapshots.py", "    model.eval()\n    try:",
           "    try:", ("tests/test_snapshots.py", "-k", "checkpoint_saved")),
    Mutant("no snapshot at step 0", LOOP, "        kept.take(self.model, self.st.step)\n", "",
           ("tests/test_snapshots.py", "-k", "every_n_steps")),
    Mutant("Muon in bfloat16 where it is emulated", "gptcore/training/muon.py",
           "torch.bfloat16 if bfloat16_supported(nesterov.device) else torch.float32", "torch.bfloat16",
           ("tests/test_train.py", "-k", "orthogonalises")),
    Mutant("the replay takes any name as a run", "demo/tabs/replay.py", "    if run not in sources:",
           "    if run not in sources and not Path(run).is_dir():", ("tests/test_demo_replay.py", "-k", "bad")),
    Mutant("models on different tokenizers compared", "demo/tabs/compare.py",
           "    if a.tokenizer.to_dict() != b.tokenizer.to_dict():", "    if False:",
           ("tests/test_demo_compare.py", "-k", "refused")),
    # the ablation arms' kept models
    Mutant("kept weights stored in float32", "gptcore/experiments/arm_models.py",
           'KEPT_DTYPE = "float16"', 'KEPT_DTYPE = "float32"', ("tests/test_arm_models.py", "-k", "recorded_study")),
    Mutant("a kept model trained again", "gptcore/experiments/ablate.py",
           "            elif find_model(self.out_dir, config) is None:", "            else:",
           ("tests/test_arm_models.py", "-k", "not_trained_again")),
    Mutant("the results rewritten when only models were kept", "gptcore/experiments/ablate.py",
           "load_results(self.path) if self.path.exists() else self._save()", "self._save()",
           ("tests/test_arm_models.py", "-k", "recorded_study")),
    Mutant("the stored dtype makes a kept model another run", "gptcore/experiments/run_identity.py",
           '    out["train"]["save_dtype"] = "float32"', "", ("tests/test_arm_models.py", "-k", "not_trained_again")),
    Mutant("the arm to compare with opened unchecked", "demo/tabs/arm_models.py",
           "_checked(registry, other, NO_OTHER)", "other",
           ("tests/test_demo_ablations.py", "-k", "opening_an_arm")),
    Mutant("a bigram arm offered to the Inside tab", "demo/tabs/arm_models.py",
           '    return arm.path is not None and arm.arch == "gpt"', "    return arm.path is not None",
           ("tests/test_demo_ablations.py", "-k", "without_attention")),
    Mutant("the weights' further files ignored on load", "gptcore/checkpoint.py",
           "        return [first] + [files[n] for n in WEIGHT_PARTS if n in files]", "        return [first]",
           ("tests/test_checkpoint.py", "-k", "under_a_size")),
    Mutant("a tensor stored in two weights files taken", "gptcore/checkpoint.py",
           "        if again:", "        if False:", ("tests/test_checkpoint.py", "-k", "foreign_part")),
    Mutant("an earlier save's further weights files left in the checkpoint", "gptcore/checkpoint.py",
           "remove=(LEGACY_WEIGHTS, *(n for n in WEIGHT_PARTS if n not in weights))", "remove=(LEGACY_WEIGHTS,)",
           ("tests/test_checkpoint.py", "-k", "under_a_size")),
    Mutant("an upload refuses the weights' further files", "demo/server/uploads.py",
           '"draft.pt"} | WEIGHT_PARTS', '"draft.pt"}', ("tests/test_demo_models.py", "-k", "several_weights")),
    # our own AdamW
    Mutant("AdamW adds eps before the bias correction", "gptcore/training/adamw.py",
           "        torch._foreach_div_(denoms, [(1 - beta2 ** n) ** 0.5 for n in counts])\n"
           "        torch._foreach_add_(denoms, eps)\n",
           "        torch._foreach_add_(denoms, eps)\n"
           "        torch._foreach_div_(denoms, [(1 - beta2 ** n) ** 0.5 for n in counts])\n",
           ("tests/test_optimizers.py", "-k", "bit_for_bit")),
    Mutant("a resumed optimizer shares the saved state's tensors", "gptcore/training/optim_base.py",
           "        return value.detach().to(param.device, dtype).clone()", "        return value",
           ("tests/test_optimizers.py",)),
    Mutant("training on the CPU with torch.optim's AdamW", "gptcore/training/optimizers.py",
           "from .adamw import AdamW", "from torch.optim import AdamW", ("tests/test_optimizers.py", "-k", "compiler")),
    Mutant("the first token waits for a second pass", "gptcore/inference/sampling.py",
           "    logits = prefill(len(context)) if cache is not None else next_pass([])\n",
           "    if cache is not None:\n        prefill(len(context) - 1)\n    logits = next_pass([])\n",
           ("tests/test_sample.py", "-k", "first_token")),
]


def run(mutant: Mutant) -> str:
    """'caught by TEST', 'NOT CAUGHT' or 'GONE (...)' for one mutant; the file is restored in every case."""
    path = ROOT / mutant.path
    source = path.read_text(encoding="utf-8")
    if mutant.old not in source:
        return f"GONE (its snippet is no longer in {mutant.path}: update the mutant)"
    path.write_text(source.replace(mutant.old, mutant.new, 1), encoding="utf-8")
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--no-cov",
                                 "-o", "addopts=", *mutant.tests], cwd=ROOT, capture_output=True, text=True,
                                env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    finally:
        path.write_text(source, encoding="utf-8")
    failed = [line for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    if failed:
        return "caught by " + failed[0].split("::", 1)[-1][:80]
    return f"NOT CAUGHT (pytest exit {result.returncode})"


def main(names: list[str]) -> int:
    chosen = [m for m in MUTANTS if not names or m.name in names]
    unknown = set(names) - {m.name for m in MUTANTS}
    if unknown:
        print(f"unknown mutants: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    verdicts = {}
    for mutant in chosen:
        verdicts[mutant.name] = run(mutant)
        print(f"{mutant.name}: {verdicts[mutant.name]}", flush=True)
    missed = [name for name, verdict in verdicts.items() if not verdict.startswith("caught")]
    print(f"\n{len(verdicts) - len(missed)} of {len(verdicts)} mutants caught"
          + (f"; not caught or gone: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
