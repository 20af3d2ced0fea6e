"""bench/load.py at a small size against the test app: a crowd of one visitor of each kind, each request of
which is served or, for the hostile upload, refused in a sentence; nothing fails and the server serves on.
Its speeds are reported by the benchmark, never checked here."""

from __future__ import annotations

import pytest

from bench.load import LoadOptions, ROLES, outcome_of, run_load

pytestmark = pytest.mark.slow


def test_a_small_crowd_is_served_and_the_hostile_upload_refused(app_url):
    visitors = len(dict.fromkeys(ROLES))  # one of each kind
    report = run_load(LoadOptions(visitors=visitors, seconds=3, checkpoint="tiny", url=app_url, think_s=0.2,
                                  train_seconds=5))
    rows = report["endpoints"]
    assert report["server_alive"] and report["roles"] == {r: 1 for r in set(ROLES)}
    assert {name: row["failed"] for name, row in rows.items() if row["failed"]} == {}
    for endpoint in ("/generate", "/predictions", "/upload_model", "/train_start", "/ablations"):
        assert rows[endpoint]["served"] >= 1 and rows[endpoint]["p50_s"] > 0, endpoint
    hostile = rows["/upload_model (hostile)"]
    assert hostile["served"] == 0 and hostile["refused"] >= 1
    assert all("config.json" in m or "memory" in m for m in hostile["messages"])
    # a stream's rate is measured only when an update arrives before its last; on a busy machine all of a short
    # stream can arrive at once, so whether there is a rate is a speed, and only its sign is checked
    assert rows["/generate"].get("chars_per_s_min", 1) > 0


@pytest.mark.parametrize("message, outcome", [
    ("Queue is full! Please try again.", "busy"),
    ("a run is already in progress", "busy"),
    ("Error", "failed"),
    ("", "failed"),
    ("the upload is not a usable model: config.json is nested more than 32 levels deep", "refused"),
])
def test_answers_are_told_apart(message, outcome):
    assert outcome_of(Exception(message))[0] == outcome
    assert outcome_of(TimeoutError())[0] == "failed"
