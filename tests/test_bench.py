import json
import statistics

from gptcore.cli import main


def test_quick_benchmark_writes_table_and_json(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--repeats", "2", "--checkpoint", str(tiny_checkpoint), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| sampling chars/s" in printed and "n-gram draft" in printed and "KV cache alone" in printed
    result = json.loads(out.read_text())
    assert len(result["train"]["fast_bfloat16_tokens_per_sec"]) == 2
    assert result["train"]["ratio"] > 0 and result["train"]["without_dropout"]["ratio"] > 0
    sampling = result["sampling"]
    assert sampling["median_first"] > 0 and sampling["draft_contexts"] > 0
    for name in ("cached", "cache_only", "sampled", "sampled_cache_only", "naive"):
        # the median comes from each path's faster thread count; every count's repeats are kept
        threads = sampling[f"{name}_threads"]
        assert sampling[f"median_{name}"] == statistics.median(sampling[f"{name}_by_threads"][str(threads)])
        assert all(len(rates) == 2 for rates in sampling[f"{name}_by_threads"].values())
    assert sampling["first_threads"] == sampling["cached_threads"]
    assert sampling["cached_ratio"] == sampling["median_cached"] / sampling["median_naive"]
    assert sampling["median_one_thread_cached"] == statistics.median(sampling["cached_by_threads"]["1"])
    assert 0 < result["shipped"]["val_loss"] < 10 and result["shipped"]["largest_file_mb"] > 0
    assert "`train --preset speedrun`" in printed and "not run (add it to `--runs`)" in printed
    tok = result["tokenizer"]
    assert tok["vocab_size"] == 300 and len(tok["encode_cold_mb_s"]) == 2
    assert tok["median_cold"] == statistics.median(tok["encode_cold_mb_s"]) > 0 and tok["median_char"] > 0
    assert "BPE: learn a 300-token vocabulary" in printed and "BPE: encode the corpus" in printed
    t0 = result["train"]["without_dropout"]
    assert t0["share_of_peak"] == t0["achieved_flops"] / result["matmul_peak"]["peak_flops"] > 0
    assert "matrix-multiply peak" in printed
    lines = printed.splitlines()
    greedy = next(line for line in lines if line.startswith("| sampling chars/s"))
    assert greedy.endswith("| ≥ 40x | " + ("**met**" if sampling["cached_ratio"] >= 40 else "not met") + " |")
    first = next(line for line in lines if line.startswith("| time to first token"))
    assert first.endswith("| ≤ 10 ms | " + ("**met**" if sampling["median_first"] <= 0.01 else "not met") + " |")


def test_repeated_runs_are_summarized_by_their_worst_case():
    from gptcore.experiments.bench import summarize_runs

    runs = [{"preset": "speedrun", "wall_s": w, "val_loss": v} for w, v in [(18.0, 1.80), (19.0, 1.82), (21.0, 1.81)]]
    runs.append({"preset": "broken", "error": "boom"})
    summary = summarize_runs(runs)
    assert summary["speedrun"] == {"n": 3, "wall_s": 19.0, "val_loss": 1.81, "max_wall_s": 21.0, "max_val_loss": 1.82}
    assert summary["broken"] == {"error": "boom"}


def test_the_gpu_section_runs_its_code_on_any_device(tiny_checkpoint, corpus):
    """The GPU section is measured only on a GPU; its code path is exercised here on the CPU at tiny sizes."""
    import torch

    from gptcore.experiments.bench import gpu_rows, gpu_section

    g = gpu_section(torch.device("cpu"), corpus, str(tiny_checkpoint), repeats=1, quick=True)
    assert g["eager"]["ratio"] > 0 and g["eager"]["median_fast_ms_per_step"] > 0 and g["eager"]["fast_warmup_s"] > 0
    assert g["sampling"]["median_cached"] > 0 and g["sampling"]["has_draft"]
    rows = gpu_rows(g, {})
    assert "nanoGPT's baby GPT" in rows[0] and "`train --preset gpu-speedrun`" in rows[1] and rows[1].endswith("not run |")


def test_bench_checks_its_arguments_before_any_work(tmp_path, tiny_checkpoint, capsys):
    base = ["bench", "--quick", "--checkpoint", str(tiny_checkpoint)]
    assert main(base + ["--runs", "nope", "--out", str(tmp_path / "b.json")]) == 1
    assert "unknown preset 'nope'" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(base + ["--out", str(tmp_path / "file" / "b.json")]) == 1
    assert "is not a directory" in capsys.readouterr().err
    assert main(base + ["--device", "tpu", "--out", str(tmp_path / "b.json")]) == 1
    assert "device must be auto, cpu, cuda, cuda:N or mps" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_a_time_to_loss_goal_is_judged_by_the_worst_run_and_says_when_it_was_not_run():
    from gptcore.experiments.bench import run_verdict, summarize_runs

    runs = summarize_runs([{"preset": "speedrun", "wall_s": w, "val_loss": v}
                           for w, v in [(18.0, 1.80), (19.0, 1.82), (21.0, 1.81)]])["speedrun"]
    assert runs["wall_s"] <= 20 and run_verdict(runs, 1.886, 20) == "not met"  # the median alone would pass
    assert run_verdict(runs, 1.886, 21) == "**met**"
    assert run_verdict(runs, 1.81, 21) == "not met"  # worst loss 1.82
    assert run_verdict(None, 1.886, 20) == "not run"
    assert run_verdict({"error": "boom"}, 1.886, 20) == "not met"


def test_the_shipped_model_row_evaluates_a_bpe_checkpoint_in_its_own_tokens(tmp_path, corpus_text):
    from gptcore.data import Corpus
    from gptcore.experiments.bench import shipped_model
    from gptcore.presets import get_preset
    from gptcore.training import Trainer

    config = get_preset("tiny").with_overrides({"tokenizer": "bpe", "bpe_vocab_size": 300, "max_iters": 4})
    corpus = Corpus.from_text(corpus_text, recipe=config.train)
    result = Trainer(config, corpus, tmp_path / "bpe").run()
    row = shipped_model(str(tmp_path / "bpe"), corpus_text)
    assert row["val_loss"] == result.val_loss and row["val_nats_per_char"] == result.val_nats_per_char
    assert row["val_nats_per_char"] < row["val_loss"]


def test_the_inside_findings_script_measures_a_checkpoint(tmp_path, tiny_checkpoint):
    """bench/inside_shipped.py, which docs/app.md's findings on the shipped model come from, on a tiny model."""
    import importlib.util
    import json
    import os
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "inside_shipped.py"
    spec = importlib.util.spec_from_file_location("inside_shipped", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "inside.json"
    data = ["--data", os.environ["GPTCORE_DATA"]] if os.environ.get("GPTCORE_DATA") else []  # else downloaded
    assert script.main(["--checkpoint", str(tiny_checkpoint), "--windows", "2", *data, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    stages = result["logit_lens"]
    assert [s["stage"] for s in stages][0] == "embeddings" and len(stages) == 1 + 2  # the tiny preset: 2 layers
    assert len(result["heads"]) == 2 * 2 and result["windows"] == 2
    assert all(0 <= s["top1_accuracy"] <= 1 for s in stages) and result["surprise_by_kind"]


def test_a_training_token_costs_six_flops_a_multiplied_parameter_plus_attention():
    from gptcore.config import ModelConfig
    from gptcore.experiments.flops import training_flops_per_token
    from gptcore.models import build_model

    learned = ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=16)
    rotary = ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, pos_emb="rope")
    params = sum(p.numel() for p in build_model(learned).parameters())
    attention = 12 * 2 * 32 * 16
    assert training_flops_per_token(learned) == 6 * (params - 16 * 32) + attention  # the position table is looked up
    assert training_flops_per_token(rotary) == 6 * sum(p.numel() for p in build_model(rotary).parameters()) + attention
    longer = ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, pos_emb="rope")
    assert training_flops_per_token(longer) - training_flops_per_token(rotary) == 12 * 2 * 32 * 16


def test_the_matmul_peak_is_the_best_size():
    from gptcore.experiments.flops import matmul_peak

    peak = matmul_peak(sizes=(32, 64), repeats=2)
    assert set(peak["flops_by_size"]) == {"32", "64"} and peak["dtype"] == "bfloat16"
    assert peak["peak_flops"] == max(peak["flops_by_size"].values()) > 0
