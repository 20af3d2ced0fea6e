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
