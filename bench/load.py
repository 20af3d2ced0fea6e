"""A crowd of visitors on the real app: what each endpoint served, refused as busy, or failed, and how fast.

Not a test: it reports (the suite runs it at a small size and checks its verdicts, not its speeds).

    python bench/load.py [--visitors 20] [--seconds 180] [--checkpoint shakespeare-char] [--out FILE]
                         [--think 1] [--url http://127.0.0.1:PORT/]

Without ``--url`` it launches ``python app.py`` on a free loopback port, with a scratch folder for runs and
uploads, and measures the server's memory (the largest resident size of the server process, and of the
server with every process it started: training, upload checks). With ``--url`` it drives that server,
which must be on this machine (loopback only), and cannot see its memory.

Each visitor is a ``gradio_client`` session of its own that repeats one kind of request until the time is
up, always at least once. The first 20 visitors are 12 streaming samplers, 4 inside views (predictions,
logit lens, attention), 2 uploaders (one of a real model, one hostile: a config asking for a million layers
or nested 100,000 deep), 1 trainer and 1 visitor browsing ablation studies; more visitors repeat the mix.
Between two requests a visitor pauses (``--think``, 1 s), as a person reads what came back. Every request
is bounded (``--request-timeout``): one still unanswered then counts as failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.served_app import free_port, launched_app_process  # noqa: E402

ROLES = ["sample", "inside", "upload", "hostile_upload", "train", "ablations", *["sample"] * 10, "sample",
         *["inside"] * 3]
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
BUSY_WORDS = ("queue is full", "busy", "already in progress", "started by another visitor")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
STREAM_GOAL = 100.0  # characters a second a visitor's stream should keep while the crowd runs


@dataclass(frozen=True)
class LoadOptions:
    visitors: int = 20
    seconds: float = 180.0
    checkpoint: str = "shakespeare-char"
    url: str | None = None
    request_timeout: float = 300.0
    new_tokens: int = 300
    train_seconds: float = 60.0
    think_s: float = 1.0  # a visitor's pause between requests, reading what came back


@dataclass
class Record:
    endpoint: str
    outcome: str  # served, refused (a clear one-sentence answer, as a hostile upload must get), busy, failed
    seconds: float
    chars_per_s: float | None = None
    wait_s: float | None = None
    message: str = ""


@dataclass
class Crowd:
    options: LoadOptions
    url: str
    records: list[Record] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, record: Record) -> None:
        with self.lock:
            self.records.append(record)


def _client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False)


def outcome_of(error: BaseException) -> tuple[str, str]:
    """busy, refused (the app's own sentence) or failed (a generic error, a traceback, a timeout)."""
    message = str(error).strip()
    if any(w in message.lower() for w in BUSY_WORDS):
        return "busy", message
    if isinstance(error, TimeoutError) or not message or message in ("None", "Error") or "Traceback" in message:
        return "failed", message or type(error).__name__
    return "refused", message


def ask(client, crowd: Crowd, api: str, *args, label: str | None = None, until_answered: bool = False):
    """One request to ``api``, bounded by the request timeout (a hang counts as a failure, not a wait), its
    outcome and latency recorded under ``label`` (``api`` unless given); returns its result, or None when it
    did not succeed. ``until_answered``: a request refused as busy is asked again a second later, as a
    person would."""
    while True:
        start, job = time.perf_counter(), None
        try:
            job = client.submit(*args, api_name=api)
            result = job.result(timeout=crowd.options.request_timeout)
        except Exception as e:  # every kind of failure is what this script counts
            if isinstance(e, TimeoutError) and job is not None:
                job.cancel()
            outcome, message = outcome_of(e)
            crowd.add(Record(label or api, outcome, time.perf_counter() - start, message=message[:200]))
            if outcome == "busy" and until_answered:
                time.sleep(1.0)
                continue
            return None
        crowd.add(Record(label or api, "served", time.perf_counter() - start))
        return result


def sample(client, crowd: Crowd) -> None:
    """One streamed generation: its wait (request to first update, the queue included) and its rate (new
    characters over the time from first to last update). The job is polled, not iterated: iterating a job
    that ends in an error or is cancelled waits for ever."""
    o = crowd.options
    job = client.submit(o.checkpoint, "ROMEO:", 0.8, 0, 1.0, o.new_tokens, -1, "replace", api_name="/generate")
    start = time.perf_counter()
    first = None
    while not job.done():
        if first is None and job.outputs():
            first = time.perf_counter()
        if time.perf_counter() - start > o.request_timeout:  # a hang counts as a failure, not a wait
            job.cancel()
            crowd.add(Record("/generate", "failed", time.perf_counter() - start, message="no answer in time"))
            return
        time.sleep(0.01)
    end = time.perf_counter()
    try:
        text = job.result()[0]
    except Exception as e:  # every kind of failure is what this script counts
        outcome, message = outcome_of(e)
        crowd.add(Record("/generate", outcome, end - start, message=message[:200]))
        return
    first = first or end
    rate = (len(text) - len("ROMEO:")) / (end - first) if end > first else None
    crowd.add(Record("/generate", "served", end - start, chars_per_s=rate, wait_s=first - start))


def inside(client, crowd: Crowd, turn: int) -> None:
    api = ("/predictions", "/logit_lens", "/attention")[turn % 3]
    args = (crowd.options.checkpoint, TEXT) + ((1, 1) if api == "/attention" else ())
    ask(client, crowd, api, *args)


def ablations(client, crowd: Crowd, turn: int, studies: list[str]) -> None:
    study = studies[turn % len(studies)]
    ask(client, crowd, "/ablations", study)


def upload(client, crowd: Crowd, turn: int, files: dict[str, Path], hostile: bool) -> None:
    from gradio_client import handle_file

    name = ("huge", "deep")[turn % 2] if hostile else "good"
    ask(client, crowd, "/upload_model", [handle_file(str(files[name]))], f"{name}-{turn}",
        label="/upload_model (hostile)" if hostile else "/upload_model")


def train(client, crowd: Crowd, deadline: float) -> None:
    """Start the Train tab's run, watch it until it ends or the time is up, then stop it."""
    o = crowd.options
    seconds = max(5.0, min(o.train_seconds, deadline - time.monotonic()))
    if ask(client, crowd, "/train_start", "quick", 2, 4, 64, 64, 3e-3, "seconds", seconds, "Tiny Shakespeare",
           None) is None:
        time.sleep(1.0)
        return
    while time.monotonic() < deadline:
        status = ask(client, crowd, "/train_status")
        if status is not None and not status.get("active"):
            return
        time.sleep(1.0)
    ask(client, crowd, "/train_stop", until_answered=True)
    while (status := ask(client, crowd, "/train_status", until_answered=True)) is not None and status.get("active"):
        time.sleep(0.5)


def visitor(crowd: Crowd, role: str, deadline: float, files: dict[str, Path], studies: list[str]) -> None:
    client = _client(crowd.url)
    turn = 0
    while turn == 0 or time.monotonic() < deadline:
        if role == "sample":
            sample(client, crowd)
        elif role == "inside":
            inside(client, crowd, turn)
        elif role in ("upload", "hostile_upload"):
            upload(client, crowd, turn, files, hostile=role == "hostile_upload")
        elif role == "train":
            train(client, crowd, deadline)
        else:
            ablations(client, crowd, turn, studies)
        turn += 1
        time.sleep(crowd.options.think_s)


def upload_files(url: str, checkpoint: str, folder: Path) -> dict[str, Path]:
    """A real model's zip (downloaded from the app) and two hostile variants of it."""
    good = Path(_client(url).predict(checkpoint, api_name="/download_model"))
    files = {"good": folder / "good.zip"}
    files["good"].write_bytes(good.read_bytes())
    with zipfile.ZipFile(good) as z:
        members = {n: z.read(n) for n in z.namelist()}
    config_name = next(n for n in members if n.endswith("config.json"))
    config = json.loads(members[config_name])
    variants = {"huge": json.dumps({**config, "model": {**config["model"], "n_layer": 1_000_000}}).encode(),
                "deep": b"[" * 100_000 + b"]" * 100_000}
    for name, text in variants.items():
        files[name] = folder / f"{name}.zip"
        with zipfile.ZipFile(files[name], "w") as z:
            for member, data in members.items():
                z.writestr(member, text if member == config_name else data)
    return files


def study_names(url: str) -> list[str]:
    """The studies the Ablations tab offers ("" is the first, where the API does not list them)."""
    info = _client(url).view_api(print_info=False, return_format="dict")
    parameter = info["named_endpoints"]["/ablations"]["parameters"][0]
    return list(parameter.get("type", {}).get("enum", [])) or [""]


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _tree(root: int) -> list[int]:
    """``root`` and every process descended from it (Linux's /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


class MemoryWatch(threading.Thread):
    """The largest resident memory of the server process, and of it with its children, sampled twice a second."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.server_peak, self.tree_peak = pid, 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            self.server_peak = max(self.server_peak, _rss_bytes(self.pid))
            self.tree_peak = max(self.tree_peak, sum(_rss_bytes(p) for p in _tree(self.pid)))


@contextmanager
def served(options: LoadOptions, scratch: Path) -> Iterator[tuple[str, int | None, Callable[[], bool]]]:
    """(URL, server pid or None, a check that the server still runs): ``--url``'s server, or a launched one."""
    if options.url:
        host = urlparse(options.url).hostname
        if host not in LOOPBACK:
            raise SystemExit(f"--url must be a server on this machine (127.0.0.1 or localhost), got {host!r}")
        yield options.url, None, lambda: True
        return
    env = dict(os.environ, GPTCORE_APP_RUNS=str(scratch / "runs"), GRADIO_SERVER_PORT=str(free_port()),
               GRADIO_SERVER_NAME="127.0.0.1", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    with launched_app_process(env, scratch / "app.log") as (url, process):
        yield url, process.pid, lambda: process.poll() is None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarize(records: list[Record]) -> dict[str, dict]:
    """Per endpoint: requests served, refused, busy and failed, and the p50/p95 latency of the served ones."""
    table: dict[str, dict] = {}
    for endpoint in sorted({r.endpoint for r in records}):
        mine = [r for r in records if r.endpoint == endpoint]
        served = [r.seconds for r in mine if r.outcome == "served"]
        row = {k: sum(r.outcome == k for r in mine) for k in ("served", "refused", "busy", "failed")}
        row.update(p50_s=percentile(served, 0.5) if served else None, p95_s=percentile(served, 0.95) if served else None)
        rates = [r.chars_per_s for r in mine if r.chars_per_s]
        if rates:
            waits = [r.wait_s for r in mine if r.wait_s is not None]
            row.update(chars_per_s_median=statistics.median(rates), chars_per_s_min=min(rates),
                       chars_per_s_p5=percentile(rates, 0.05), streams_at_goal=sum(r >= STREAM_GOAL for r in rates),
                       wait_p50_s=percentile(waits, 0.5), wait_p95_s=percentile(waits, 0.95))
        row["messages"] = sorted({r.message for r in mine if r.outcome != "served"})[:5]
        table[endpoint] = row
    return table


def run_load(options: LoadOptions) -> dict:
    """Drive the app with ``options.visitors`` visitors for ``options.seconds``; returns the report."""
    with tempfile.TemporaryDirectory(prefix="gptcore-load-") as tmp, served(options, Path(tmp)) as (url, pid, alive):
        files, studies = upload_files(url, options.checkpoint, Path(tmp)), study_names(url)
        crowd = Crowd(options, url)
        watch = MemoryWatch(pid) if pid else None
        if watch:
            watch.start()
        deadline = time.monotonic() + options.seconds
        roles = [ROLES[i % len(ROLES)] for i in range(options.visitors)]
        threads = [threading.Thread(target=visitor, args=(crowd, role, deadline, files, studies), daemon=True)
                   for role in roles]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        if watch:
            watch.done.set()
            watch.join()
        still_serving = alive() and ask(_client(url), crowd, "/generate", options.checkpoint, "ROMEO:", 0.0, 0, 1.0,
                                         20, 1, "replace", label="/generate (after)") is not None
    return {"options": asdict(options), "roles": {r: roles.count(r) for r in sorted(set(roles))},
            "elapsed_s": elapsed, "server_alive": still_serving, "endpoints": summarize(crowd.records),
            "server_peak_rss_bytes": watch.server_peak if watch else None,
            "server_and_children_peak_rss_bytes": watch.tree_peak if watch else None,
            "machine": f"{_cpu_name()}, {os.cpu_count()} CPUs",
            "when": time.strftime("%Y-%m-%d %H:%M")}


def headline(report: dict) -> str:
    """The report in one line, as README quotes it (a test checks that README's line is this one)."""
    rows = report["endpoints"].values()
    total = sum(r["served"] + r["refused"] + r["busy"] + r["failed"] for r in rows)
    stream = report["endpoints"]["/generate"]
    memory = report["server_and_children_peak_rss_bytes"]
    line = (f"{total:,} requests, {sum(r['failed'] for r in rows)} failed; streams "
            f"{stream['chars_per_s_median']:.0f} chars/s median, {stream['streams_at_goal']} of {stream['served']} "
            f"at {STREAM_GOAL:.0f} or more, slowest {stream['chars_per_s_min']:.0f}")
    return line + (f"; peak memory {memory / 1e9:.1f} GB with its children" if memory else "")


def print_report(report: dict) -> None:
    print(f"{report['options']['visitors']} visitors for {report['elapsed_s']:.0f} s ({report['roles']}) on "
          f"{report['machine']}; server alive at the end: {report['server_alive']}")
    print(f"{'endpoint':28} {'served':>6} {'refused':>7} {'busy':>5} {'failed':>6} {'p50 s':>7} {'p95 s':>7}  chars/s")
    for endpoint, row in report["endpoints"].items():
        p50, p95 = (f"{row[k]:.2f}" if row[k] is not None else "-" for k in ("p50_s", "p95_s"))
        rate = (f"{row['chars_per_s_median']:.0f} (min {row['chars_per_s_min']:.0f}), first update after "
                f"{row['wait_p50_s']:.2f} s (p95 {row['wait_p95_s']:.2f})") if "chars_per_s_min" in row else ""
        print(f"{endpoint:28} {row['served']:>6} {row['refused']:>7} {row['busy']:>5} {row['failed']:>6} "
              f"{p50:>7} {p95:>7}  {rate}")
    if report["server_peak_rss_bytes"]:
        print(f"peak resident memory: server {report['server_peak_rss_bytes'] / 1e6:.0f} MB, with its children "
              f"{report['server_and_children_peak_rss_bytes'] / 1e6:.0f} MB")
    print(headline(report))


def main(argv: list[str] | None = None) -> int:
    # a SIGTERM (timeout's, a CI's) ends the run through its clean-up, which stops the server it launched
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--checkpoint", default="shakespeare-char")
    parser.add_argument("--url", default=None)
    parser.add_argument("--request-timeout", type=float, default=300.0)
    parser.add_argument("--think", type=float, default=1.0, help="seconds a visitor pauses between requests")
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON here")
    a = parser.parse_args(argv)
    if a.visitors < 1 or a.seconds <= 0 or a.think < 0 or a.request_timeout <= 0:
        parser.error("--visitors must be at least 1, --seconds and --request-timeout above 0, --think at least 0")
    report = run_load(LoadOptions(a.visitors, a.seconds, a.checkpoint, a.url, a.request_timeout, think_s=a.think))
    print_report(report)
    if a.out:
        a.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
