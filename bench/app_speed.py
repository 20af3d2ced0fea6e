"""Speed of the app on this machine: start-up, streaming, the inspection views, a quick training run.

Not a test: it reports.

    python bench/app_speed.py [--repeats 5] [--checkpoint shakespeare-char] [--parts start,streaming,views,training]
                              [--out bench/app_speed.json]

1. start: seconds from launching ``python app.py`` to the first page served (HTTP 200 on /), median.
2. streaming: characters per second seen by a gradio_client caller streaming ``generate`` (2000 new
   characters, temperature 0.8) from the shipped checkpoint, timed from the request to the last update;
   once on an idle server and once while the Train tab's default run is training.
3. views: seconds each view of the Attention and Inside tabs takes to answer for a full context (the
   model's block_size in tokens), including its HTML or the PNG encoding of its figures, the comparison with
   the shipped two-layer model, one step of that model's replay and of the checkpoint's own, the listing of
   the heads study's arms' models, and the comparison of its 1-head and 8-head arms; in-process, median.
4. training: the Train tab's default run started through the API; seconds from Start until the reported
   train loss (mean of the recent steps) is under 2.5, then Stop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ATTENTION_TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
sys.path.insert(0, str(REPO))

from bench.served_app import free_port, wait_until_served  # noqa: E402


def _env(port: int) -> dict:
    return dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
                GRADIO_ANALYTICS_ENABLED="False")


def _wait_served(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    wait_until_served(url, process, timeout, poll_s=0.02)  # polled often: the start-up time is what is measured


def _launch(port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=_env(port), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def measure_start(repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        port = free_port()
        start = time.perf_counter()
        process = _launch(port)
        try:
            _wait_served(f"http://127.0.0.1:{port}/", process)
            times.append(time.perf_counter() - start)
        finally:
            _stop(process)
    return times


def _stream_rates(client, checkpoint: str, repeats: int, new_chars: int) -> list[float]:
    rates = []
    for i in range(repeats):
        start = time.perf_counter()
        text = ""
        for text, _ in client.submit(checkpoint, "ROMEO:", 0.8, 0, 1.0, new_chars, i, "replace",
                                     api_name="/generate"):
            pass
        rates.append((len(text) - len("ROMEO:")) / (time.perf_counter() - start))
    return rates


def measure_streaming(checkpoint: str, repeats: int, new_chars: int = 2000) -> tuple[list[float], list[float]]:
    """Streaming rates on an idle server, then while the Train tab's default run is training."""
    from gradio_client import Client

    from demo.tabs.train import QUICK, app_presets

    port = free_port()
    process = _launch(port)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_served(url, process)
        client = Client(url, verbose=False)
        _stream_rates(client, checkpoint, 1, 50)  # loads the model: a warm-up, not counted
        idle = _stream_rates(client, checkpoint, repeats, new_chars)
        m = app_presets()[QUICK][1].model
        client.predict(QUICK, m.n_layer, m.n_head, m.n_embd, m.block_size, 3e-3, "seconds", 300,
                       "Tiny Shakespeare", None, api_name="/train_start")
        while client.predict(api_name="/train_status")["state"] != "running":
            time.sleep(0.2)
        busy = _stream_rates(client, checkpoint, repeats, new_chars)
        client.predict(api_name="/train_stop")
        return idle, busy
    finally:
        _stop(process)


def measure_training(repeats: int) -> list[dict]:
    """The Train tab's default (quick) run through the API: time until the train loss is under 2.5."""
    from gradio_client import Client

    from demo.tabs.train import QUICK, app_presets

    cfg = app_presets()[QUICK][1]
    m = cfg.model
    port = free_port()
    process = _launch(port)
    out = []
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_served(url, process)
        client = Client(url, verbose=False)
        for _ in range(repeats):
            clicked = time.perf_counter()
            client.predict(QUICK, m.n_layer, m.n_head, m.n_embd, m.block_size, cfg.train.lr, "seconds", 120,
                           "Tiny Shakespeare", None, api_name="/train_start")
            while True:
                st = client.predict(api_name="/train_status")
                if st["train_loss"] is not None and st["train_loss"] < 2.5:
                    out.append({"from_click_s": round(time.perf_counter() - clicked, 2),
                                "training_elapsed_s": round(st["elapsed"], 2), "step": st["step"],
                                "tokens_per_sec": round(st["tokens_per_sec"] or 0)})
                    break
                if not st["active"] and st["state"] != "idle":
                    raise RuntimeError(f"run ended before reaching loss 2.5: {st['message']}")
                time.sleep(0.1)
            client.predict(api_name="/train_stop")
            while client.predict(api_name="/train_status")["active"]:
                time.sleep(0.2)
        return out
    finally:
        _stop(process)


COMPARED = "two-layer"  # the shipped small model trained with snapshots: compared with, and replayed
STUDY, ARMS = "ablations-2000/heads", ("ablations-2000/heads-1", "ablations-2000/heads-8")  # the arms compared


def measure_views(checkpoint: str, repeats: int) -> dict[str, list[float]]:
    """Seconds each view of the Attention and Inside tabs takes to answer for a full context, including
    the HTML it sends or the PNG encoding of its figures; in-process, model loaded, median of ``repeats``."""
    from gradio.processing_utils import encode_plot_to_base64

    from demo.server.training_job import TrainingManager
    from demo.tabs import arm_models, compare, inside, replay
    from demo.tabs.attention import show_attention
    from demo.server.registry import ModelRegistry
    from demo.server.results_folders import sources
    from demo.server.settings import AppSettings

    settings = AppSettings()
    registry = ModelRegistry(settings.checkpoints_dir, settings.runs_dir, torch_threads=settings.torch_threads,
                             results_dirs=sources(settings.ablations_dir))
    ck = registry.get(checkpoint)  # load once, as the running app would have
    block, limits = ck.config.model.block_size, settings.limits
    text = (ATTENTION_TEXT * (block // len(ATTENTION_TEXT) + 1))[:block]  # a full context
    heads = [inside.head_value(0, 0), inside.head_value(ck.config.model.n_layer - 1, 1)]
    arm_text = text[:registry.get(ARMS[0]).config.model.block_size]  # the arms' full context, looked up untimed

    def png(*outputs):
        for out in outputs:
            figure = out.get("value") if isinstance(out, dict) else out
            if figure is not None and hasattr(figure, "savefig"):
                encode_plot_to_base64(figure, "png")

    views = {
        "attention, one head (interactive)": lambda: show_attention(registry, limits, checkpoint, text, "1", "1"),
        "attention, all heads of a layer (picture)": lambda: png(
            show_attention(registry, limits, checkpoint, text, "1", "all")[1]),
        "predictions and surprise": lambda: inside.predictions_view(registry, limits, checkpoint, text),
        "logit lens": lambda: inside.logit_lens_view(registry, limits, checkpoint, text),
        "embeddings (two pictures)": lambda: png(*inside.embeddings_view(registry, checkpoint)[:2]),
        "heads off (two heads)": lambda: inside.heads_off_view(registry, limits, checkpoint, text, heads),
        "one head off at a time (every head)": lambda: inside.each_head(registry, limits, checkpoint, text),
        f"compare with {COMPARED} (both models, every view)": lambda: compare.compare_view(
            registry, limits, checkpoint, COMPARED, text),
        f"replay of {COMPARED}'s training, one snapshot": lambda: replay.show(
            registry, TrainingManager(), COMPARED, 1, 1, 1),
        f"replay of {checkpoint}'s training, one snapshot": lambda: replay.show(
            registry, TrainingManager(), checkpoint, 1, 1, 1),
        f"the arms' models of {STUDY}": lambda: arm_models.arm_choices(settings.ablations_dir, STUDY),
        f"compare two arms, {ARMS[0]} with {ARMS[1]} (every view)": lambda: compare.compare_view(
            registry, limits, ARMS[0], ARMS[1], arm_text),
    }
    out: dict = {}
    for name, view in views.items():
        view()  # the first call of each imports and caches what it needs
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            view()
            times.append(time.perf_counter() - start)
        out[name] = times
    out["text_tokens"] = len(ck.tokenizer.encode(text))
    return out


def _summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "runs": [round(v, 3) for v in values]}


PARTS = ("start", "streaming", "views", "training")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--checkpoint", default="shakespeare-char")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--out", default=str(REPO / "bench" / "app_speed.json"))
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    result: dict = {
        "command": "python bench/app_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "checkpoint": args.checkpoint,
    }
    if "start" in parts:
        start = measure_start(args.repeats)
        print(f"start to first page: median {statistics.median(start):.2f} s", flush=True)
        result["start_to_first_page_s"] = {**_summary(start), "target": "<= 5"}
    if "streaming" in parts:
        stream, stream_training = measure_streaming(args.checkpoint, args.repeats)
        print(f"streaming: median {statistics.median(stream):.0f} chars/s, "
              f"{statistics.median(stream_training):.0f} chars/s during a training run", flush=True)
        result["streaming_chars_per_s"] = {
            **_summary(stream), "target": ">= 200",
            "how": "gradio_client streaming /generate, 2000 new chars, request to last update"}
        result["streaming_chars_per_s_during_training"] = {
            **_summary(stream_training), "how": "the same, while the Train tab's default run trains"}
    if "views" in parts:
        views = measure_views(args.checkpoint, args.repeats)
        n = views.pop("text_tokens")
        for name, values in views.items():
            print(f"{name} ({n} tokens): median {statistics.median(values):.3f} s", flush=True)
        result["views_s"] = {name: {**_summary(v), "target": "<= 1"} for name, v in views.items()}
        result["views_text_tokens"] = n
    if "training" in parts:
        train = measure_training(min(args.repeats, 3))
        print(f"quick training run to loss < 2.5: median {statistics.median(r['from_click_s'] for r in train):.1f} s "
              "from Start", flush=True)
        result["train_quick_to_loss_2_5"] = {
            "median_from_click_s": statistics.median(r["from_click_s"] for r in train),
            "median_training_elapsed_s": statistics.median(r["training_elapsed_s"] for r in train),
            "runs": train, "target": "train loss (mean of recent steps) < 2.5 within ~30 s on one core"}
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
