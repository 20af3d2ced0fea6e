import json

from gptcore.cli import main


def test_quick_benchmark_writes_table_and_json(tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--repeats", "2", "--checkpoint", str(tiny_checkpoint), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| sampling chars/s" in printed and "KV cache" in printed
    result = json.loads(out.read_text())
    assert len(result["train"]["fast_bfloat16_tokens_per_sec"]) == 2
    assert result["train"]["ratio"] > 0 and result["sampling"]["ratio"] > 0
    assert result["sampling"]["median_first_token_s"] > 0
    assert result["train"]["without_dropout"]["ratio"] > 0
    sampling = result["sampling"]
    assert sampling["cached_threads"] >= 1 and sampling["naive_threads"] >= 1
    # the ratio's base is each side's faster thread count; the app's one-thread rate is reported too
    assert sampling["cached_chars_per_sec"] == sampling["cached_chars_per_sec_by_threads"][str(sampling["cached_threads"])]
    assert sampling["one_thread_cached_chars_per_sec"] == sampling["cached_chars_per_sec_by_threads"]["1"]
    assert len(sampling["one_thread_cached_chars_per_sec"]) == 2
    assert 0 < result["shipped"]["val_loss"] < 10 and result["shipped"]["largest_file_mb"] > 0
    assert "`train --preset speedrun`" in printed and "not run (add it to `--runs`)" in printed


def test_repeated_runs_are_summarized_by_their_worst_case():
    from gptcore.bench import summarize_runs

    runs = [{"preset": "speedrun", "wall_s": w, "val_loss": v} for w, v in [(18.0, 1.80), (19.0, 1.82), (21.0, 1.81)]]
    runs.append({"preset": "broken", "error": "boom"})
    summary = summarize_runs(runs)
    assert summary["speedrun"] == {"n": 3, "wall_s": 19.0, "val_loss": 1.81, "max_wall_s": 21.0, "max_val_loss": 1.82}
    assert summary["broken"] == {"error": "boom"}
