"""The launched app (``python app.py``) driven through gradio_client, as an API user would."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from gradio_client import Client

from demo_support import APP_MAX_NEW_TOKENS

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def raw_call(url: str, api_name: str, body: str) -> str:
    """Call an endpoint with a hand-written JSON body, as a client that is not gradio_client could: NaN,
    Infinity and lone surrogates (as JSON escapes) cannot be sent through gradio_client at all."""
    import json
    import urllib.request

    request = urllib.request.Request(f"{url.rstrip('/')}/gradio_api/call/{api_name}", data=body.encode("ascii"),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        event_id = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{url.rstrip('/')}/gradio_api/call/{api_name}/{event_id}", timeout=60) as response:
        return response.read().decode("utf-8")


def _generate(client, **change):
    args = dict(checkpoint="tiny", prompt="ROMEO:", temperature=0.8, top_k=0, top_p=1.0, max_new_tokens=100,
                seed=1, unknown="replace")
    args.update(change)
    return client.predict(**args, api_name="/generate")


def test_generate_returns_text(client):
    text, status = _generate(client)
    assert text.startswith("ROMEO:") and len(text) == 106 and "100 characters" in status


def test_generate_streams(client):
    job = client.submit("tiny", "", 0.8, 0, 1.0, 2000, 2, "replace", api_name="/generate")
    outputs = [o for o in job]  # every streamed update
    assert len(outputs) >= 2 and len(outputs[-1][0]) == 2000


def test_next_token_probs(client):
    plot = client.predict("tiny", "ROMEO:", 1.0, 0, 1.0, "replace", api_name="/next_token_probs")
    assert plot["columns"] == ["next character", "probability"] and len(plot["data"]) == 10


def test_every_view_gives_its_numbers(client):
    text = "to be or not"
    weights = client.predict("tiny", text, 2, 1, api_name="/attention")
    assert weights["tokens"] == list(text) and len(weights["weights"][-1]) == len(text)
    assert abs(sum(weights["weights"][-1]) - 1) < 1e-3
    pred = client.predict("tiny", text, api_name="/predictions")
    assert len(pred["surprise"]) == len(text) - 1 and len(pred["top"][0]) == 5
    lens = client.predict("tiny", text, api_name="/logit_lens")
    assert len(lens["stages"]) == 3 and len(lens["top"][-1]) == len(text)
    emb = client.predict("tiny", api_name="/embeddings")
    assert len(emb["coords"]) == 65 and len(emb["explained"]) == 2
    off = client.predict("tiny", text, ["1.1"], api_name="/heads_off")
    assert off["heads_off"] == ["1.1"] and off["loss"] != off["baseline"]
    with pytest.raises(Exception, match="no head"):
        client.predict("tiny", text, ["5.1"], api_name="/heads_off")


@pytest.mark.parametrize("change, message", [
    (dict(temperature=7), "temperature must be between 0 and 2"),
    (dict(max_new_tokens=10**6), f"max new tokens must be between 1 and {APP_MAX_NEW_TOKENS}"),
    (dict(top_p=-1), "top-p must be between"),
    (dict(checkpoint="damaged"), "damaged"),
    (dict(prompt="x" * 20_000), "limit is 10,000"),
])
def test_out_of_range_values_are_refused_clearly(client, change, message):
    with pytest.raises(Exception, match=message):
        _generate(client, **change)
    assert _generate(client, max_new_tokens=5)[0]  # and the queue is not stuck


def test_ten_people_generating_at_once_all_get_their_text(client):
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda s: _generate(client, seed=s, max_new_tokens=200)[0], range(10)))
    assert all(len(r) == 206 for r in results) and len(set(results)) > 1


def test_a_training_run_starts_reports_and_stops(client, app_url):
    # the longest run the form allows, so it is still running when stopped however slow the machine is
    start = client.predict("tiny", 2, 2, 32, 32, 3e-3, "seconds", 600, "Tiny Shakespeare", None,
                           api_name="/train_start")
    assert "Starting" in start or "Running" in start
    with pytest.raises(Exception, match="a run is already in progress"):
        client.predict("quick", 2, 4, 64, 64, 3e-3, "seconds", 60, "Tiny Shakespeare", None, api_name="/train_start")
    while (status := client.predict(api_name="/train_status"))["step"] < 20 and status["active"]:
        time.sleep(0.3)
    assert status["state"] == "running" and status["train_curve"] and status["elapsed"] > 0
    other = Client(app_url, verbose=False)  # another visitor: a session of its own
    with pytest.raises(Exception, match="only the visitor who started this run can stop it"):
        other.predict(api_name="/train_stop")
    with pytest.raises(Exception, match="started by another visitor"):
        other.predict("quick", 2, 4, 64, 64, 3e-3, "seconds", 60, "Tiny Shakespeare", None, api_name="/train_start")
    assert client.predict(api_name="/train_status")["active"]
    assert "Stopping" in client.predict(api_name="/train_stop")
    while (status := client.predict(api_name="/train_status"))["active"]:
        time.sleep(0.3)
    assert status["state"] == "stopped" and status["final_val_loss"] > 0
    trained = status["model"]
    assert trained.startswith("trained/") and "out_dir" not in status  # the model's name, never a server path
    assert _generate(client, checkpoint=trained, max_new_tokens=10)[0].startswith("ROMEO:")


def test_train_start_refuses_out_of_range_values(client):
    with pytest.raises(Exception, match="n_layer must be between 1 and 8"):
        client.predict("quick", 50, 4, 64, 64, 3e-3, "seconds", 60, "Tiny Shakespeare", None, api_name="/train_start")
    with pytest.raises(Exception, match="time limit \\(seconds\\) must be a number between 5 and 600"):
        client.predict("quick", 2, 4, 64, 64, 3e-3, "seconds", 3600, "Tiny Shakespeare", None,
                       api_name="/train_start")


def test_ablations_endpoint(client):
    intro, summary, notes, table, curves, runs = client.predict("heads", api_name="/ablations")
    assert "heads of a tiny model" in intro and summary["type"] == "matplotlib" and "| 2 heads |" in table
    assert len(runs["data"]) == 4



@pytest.mark.parametrize("change, message", [
    (dict(seed="abc"), "seed must be a finite number, got 'abc'"),
    (dict(seed=True), "seed must be a finite number, got True"),
    (dict(checkpoint="x" * 100_000), "unknown checkpoint"),
])
def test_values_of_the_wrong_kind_name_the_setting(client, change, message):
    with pytest.raises(Exception, match=message) as info:
        _generate(client, **change)
    assert len(str(info.value)) < 2000  # a huge value is not echoed back whole


@pytest.mark.parametrize("seed, prompt, message", [
    ("NaN", '"ROMEO:"', "seed must be a finite number, got nan"),
    ("Infinity", '"ROMEO:"', "seed must be a finite number, got inf"),
    ("-Infinity", '"ROMEO:"', "seed must be a finite number, got -inf"),
    ("1", '"ab\\ud800cd"', "lone surrogate (U+D800) at character 2"),
])
def test_values_json_clients_can_send_name_the_setting(app_url, seed, prompt, message):
    body = f'{{"data": ["tiny", {prompt}, 0.8, 0, 1.0, 20, {seed}, "replace"]}}'
    events = raw_call(app_url, "generate", body)
    assert "event: error" in events and message in events, events[-500:]


@pytest.mark.parametrize("lr, stop_value, message", [
    ("fast", 60, "learning rate must be a finite number, got 'fast'"),
    (3e-3, "60", "how many must be a finite number, got '60'"),
])
def test_train_start_names_the_setting_of_a_value_of_the_wrong_kind(client, lr, stop_value, message):
    with pytest.raises(Exception, match=message):
        client.predict("quick", 2, 4, 64, 64, lr, "seconds", stop_value, "Tiny Shakespeare", None,
                       api_name="/train_start")


def test_a_model_is_downloaded_uploaded_and_used_in_its_own_session(app_url, tmp_path):
    import zipfile

    from gradio_client import handle_file

    from gptcore.checkpoint import load_checkpoint

    mine, theirs = Client(app_url, verbose=False), Client(app_url, verbose=False)
    zipped = mine.predict("tiny-bpe-rope", api_name="/download_model")
    with zipfile.ZipFile(zipped) as z:
        z.extractall(tmp_path)
    assert load_checkpoint(tmp_path / "tiny-bpe-rope").tokenizer.type_name == "bpe"
    status = mine.predict([handle_file(zipped)], "mine", api_name="/upload_model")
    assert "uploaded/mine" in status
    text, _ = mine.predict("uploaded/mine", "ROMEO:", 0.0, 0, 1.0, 20, 1, "replace", api_name="/generate")
    assert text.startswith("ROMEO:")
    with pytest.raises(Exception, match="unknown checkpoint"):
        theirs.predict("uploaded/mine", "ROMEO:", 0.0, 0, 1.0, 20, 1, "replace", api_name="/generate")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(Exception, match="not a readable zip"):
        mine.predict([handle_file(str(bad))], "bad", api_name="/upload_model")


def test_hostile_nanogpt_uploads_are_refused_and_every_visitor_is_served_on(client, app_url, tmp_path):
    """A ckpt.pt asking for a million layers and a 'billion laughs' meta.pkl or vocabulary size: each gets one
    sentence, and another visitor's greedy sample right after is the one it was before."""
    import pickle
    import shutil

    import torch
    from gradio_client import handle_file

    from tests.test_hostile_files import NANOGPT, laughs, nanogpt_variant

    raw = torch.load(NANOGPT / "ckpt.pt", map_location="cpu", weights_only=True)
    for folder in ("huge", "args", "meta"):
        (tmp_path / folder).mkdir()
    huge = nanogpt_variant(tmp_path / "huge", raw, n_layer=1_000_000)
    laughing_args = nanogpt_variant(tmp_path / "args", raw, vocab_size=laughs(12, 18))
    shutil.copy(NANOGPT / "ckpt.pt", tmp_path / "meta" / "ckpt.pt")
    (tmp_path / "meta" / "meta.pkl").write_bytes(pickle.dumps({"itos": {0: "a"}, "vocab_size": laughs(12, 18)}))
    other = Client(app_url, verbose=False)
    before = _generate(other, temperature=0.0)[0]
    for ckpt, message in [(huge, "too large to load"), (laughing_args, "model_args is nested more than"),
                          (tmp_path / "meta" / "ckpt.pt", "nested more than")]:
        with pytest.raises(Exception, match=message):
            client.predict([handle_file(str(ckpt)), handle_file(str(ckpt.parent / "meta.pkl"))], "h",
                           api_name="/upload_model")
        assert _generate(other, temperature=0.0)[0] == before
