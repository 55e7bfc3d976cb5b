"""The annotation server in-process (FastAPI TestClient): dedup, labels, limits, overload, bad LLM answers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from llmguide.teachers.oni.server import Annotator, AnnotatorSettings, create_app, label_prompt


def _app(tmp_path, llm: str = "fake:rule", **kw):
    settings = AnnotatorSettings(llm=llm, db=str(tmp_path / "labels.sqlite"), **kw)
    annotator = Annotator(settings)
    return annotator, TestClient(create_app(annotator))


def test_dedup_label_and_poll_with_cursor(tmp_path, wait_until) -> None:
    annotator, http = _app(tmp_path, batch_size=4, prefs_per_batch=2)
    with http:
        caps = ["You see here 5 gold pieces.", "It's a wall.", "You kill the newt!", "It's a wall.", ""]
        reply = http.post("/captions", json={"captions": caps})
        assert reply.status_code == 200
        assert reply.json()["accepted"] == 3 and reply.json()["duplicates"] == 1
        assert http.post("/captions", json={"captions": caps[:2]}).json()["duplicates"] == 2
        assert wait_until(lambda: annotator.store.counts()["labels"] == 3)
        body = http.get("/labels", params={"since": 0}).json()
        got = {x["text"]: x["helpful"] for x in body["labels"]}
        assert got == {"You see here 5 gold pieces.": True, "It's a wall.": False, "You kill the newt!": True}
        assert http.get("/labels", params={"since": body["cursor"]}).json()["labels"] == []
        http.post("/captions", json={"captions": ["You find a hidden passage.", "You hear a door open."]})
        assert wait_until(lambda: annotator.store.counts()["prefs"] > 0)
        stats = http.get("/stats").json()
        for key in ("queue_depth", "labels_per_s", "llm_latency_ms_p50", "dedup_rate", "dropped", "llm_fallbacks"):
            assert key in stats
        assert stats["dedup_rate"] == pytest.approx(3 / 8)
        assert http.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("kwargs", "status", "needle"),
    [
        ({"content": b"{not json"}, 400, "not JSON"),
        ({"json": ["a", "b"]}, 422, '{"captions"'),
        ({"json": {"captions": [1, 2]}}, 422, "string"),
        ({"json": {"captions": ["x"] * 51}}, 413, "limit is 50"),
        ({"json": {"captions": ["y" * 300]}}, 422, "caption 0 has 300 characters"),
        ({"content": b'{"captions": ["' + b"z" * 5000 + b'"]}'}, 413, "over the limit"),
    ],
)
def test_malformed_or_oversized_requests_get_4xx(tmp_path, kwargs, status, needle) -> None:
    _, http = _app(tmp_path, max_request_captions=50, max_caption_chars=256, max_body_bytes=4096)
    with http:
        reply = http.post("/captions", **kwargs)
        assert reply.status_code == status
        assert needle in reply.json()["error"]
        assert http.get("/health").status_code == 200


def test_bad_cursor_is_422(tmp_path) -> None:
    _, http = _app(tmp_path)
    with http:
        assert http.get("/labels", params={"since": "abc"}).status_code == 422
        assert "since" in http.get("/labels", params={"since": -1}).json()["error"]


def test_flood_bigger_than_queue_is_bounded_and_counted(tmp_path, wait_until) -> None:
    annotator, http = _app(tmp_path, llm="fake:rule:0.3", queue_size=20, batch_size=4)
    with http:
        for i in range(10):
            reply = http.post("/captions", json={"captions": [f"flood {i}-{j}" for j in range(200)]})
            assert reply.status_code == 200
            assert reply.json()["queue_depth"] <= 20
        stats = http.get("/stats").json()
        assert stats["submitted"] == 2000
        assert stats["accepted"] + stats["dropped"] == 2000
        assert stats["dropped"] >= 2000 - 20 - 8  # at most the queue plus what the worker took meanwhile
        assert stats["queue_depth"] <= 20 and stats["store"]["seen"] == stats["accepted"]
        # a dropped caption was not recorded as seen: it can get in later
        assert wait_until(lambda: annotator.stats()["queue_depth"] == 0, 30)
        assert http.post("/captions", json={"captions": ["flood 9-199"]}).json()["accepted"] == 1


def test_non_json_llm_answer_is_retried_then_skipped_and_counted(tmp_path, wait_until) -> None:
    from llmguide.llm import METER

    METER.reset()
    annotator, http = _app(tmp_path, llm="fake:list:Sure! The first one looks helpful.", batch_size=4, retries=2)
    with http:
        http.post("/captions", json={"captions": ["a", "b", "c"]})
        assert wait_until(lambda: annotator.stats()["llm_fallbacks"] >= 1)
        stats = http.get("/stats").json()
        assert stats["skipped"] == 3 and stats["labels"] == 0
        assert stats["store"]["skipped"] == 3 and stats["store"]["pending"] == 0
    snap = METER.snapshot()
    assert snap.retries >= 2 and snap.fallback_reasons.get("invalid:Labels", 0) >= 1


def test_restart_requeues_seen_but_unlabelled(tmp_path, wait_until) -> None:
    settings = AnnotatorSettings(llm="fake:rule", db=str(tmp_path / "labels.sqlite"))
    first = Annotator(settings)  # worker never started: the process "dies" with captions queued
    assert first.submit(["You kill the newt!", "It's a wall."])["accepted"] == 2
    first.store.close()
    second = Annotator(settings)
    assert second.counters["requeued"] == 2
    assert second.submit(["You kill the newt!"])["duplicates"] == 1  # the dedup set survived too
    second.start()
    try:
        assert wait_until(lambda: second.store.counts()["labels"] == 2)
    finally:
        second.stop()


def test_prompt_is_prefix_stable() -> None:
    a, b = label_prompt(["x"]), label_prompt(["y", "z"])
    assert a[0].content == b[0].content  # the fixed system text comes first


@pytest.mark.slow
def test_real_smollm2_labels_a_batch(tmp_path) -> None:
    """The embedded model through constrained JSON: every caption gets a boolean label, no fallback."""
    settings = AnnotatorSettings(llm="smollm2", db=str(tmp_path / "labels.sqlite"), batch_size=4, prefs_per_batch=0, threads=1)
    annotator = Annotator(settings)
    caps = ["You see here 5 gold pieces.", "It's a wall.", "You kill the newt!", "You are hungry."]
    assert annotator.label_batch(caps) == 4
    labels = annotator.store.labels_since(0)["labels"]
    assert sorted(x["text"] for x in labels) == sorted(caps)
    assert all(isinstance(x["helpful"], bool) for x in labels)
    assert annotator.stats()["llm_fallbacks"] == 0
