"""The three intrinsic reward models: exact retrieval, a classifier that generalises, Bradley-Terry ranking."""

from __future__ import annotations

import time

import pytest
from llmguide.teachers.oni.reward import ClassifierReward, HashReward, RankingReward, make_reward_model

from llmguide.errors import ConfigError


LABELS = [
    {"text": "You kill the newt!", "helpful": True},
    {"text": "You kill the jackal!", "helpful": True},
    {"text": "You see here 7 gold pieces.", "helpful": True},
    {"text": "It's a wall.", "helpful": False},
    {"text": "It's solid stone.", "helpful": False},
    {"text": "You are hungry.", "helpful": False},
]


def test_hash_reward_is_exact_retrieval() -> None:
    model = HashReward()
    model.update(LABELS)
    assert model.reward(["You kill the newt!", "It's a wall.", "You kill the rat!", ""]).tolist() == [1.0, 0.0, 0.0, 0.0]
    assert model.stats() == {"labels": 6, "helpful": 3}


def test_classifier_generalises_to_unseen_captions(bag_of_words: type) -> None:
    model = ClassifierReward(embedder=bag_of_words(), background=False)
    model.update(LABELS)
    unseen = ["You kill the rat!", "It's a wall of stone."]
    before = model.reward(unseen)  # not embedded yet: 0, and queued for the background step
    assert before.tolist() == [0.0, 0.0]
    model.step()
    after = model.reward(unseen)
    assert after[0] > 0.5 > after[1]
    assert model.reward(["You kill the newt!"])[0] > 0.5 and model.fits == 1


def test_ranking_fits_preferences_bradley_terry(bag_of_words: type) -> None:
    model = RankingReward(embedder=bag_of_words(), background=False, label_pairs=0, min_labels=1)
    prefs = [{"a": "You kill the newt!", "b": "It's a wall.", "a_wins": True},
             {"a": "You are hungry.", "b": "You see here 7 gold pieces.", "a_wins": False},
             {"a": "You kill the jackal!", "b": "It's solid stone.", "a_wins": True}]
    model.update(LABELS, prefs)
    model.step()
    good, bad = model.reward(["You kill the jackal!", "It's solid stone."])
    assert good > bad and 0.0 <= bad <= good <= 1.0


def test_background_thread_never_blocks_reward(bag_of_words: type) -> None:
    class SlowEmbedder(bag_of_words):
        def encode(self, texts):
            time.sleep(0.5)
            return super().encode(texts)

    model = ClassifierReward(embedder=SlowEmbedder(), refit_every_s=0.0)
    try:
        model.update(LABELS)
        t0 = time.perf_counter()
        for _ in range(100):
            model.reward(["You kill the rat!"])
        assert time.perf_counter() - t0 < 0.2  # lookups only, while the embedder sleeps
        deadline = time.monotonic() + 10
        while model.reward(["You kill the rat!"])[0] == 0.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert model.reward(["You kill the rat!"])[0] > 0.5
    finally:
        model.close()


def test_unknown_model_name() -> None:
    with pytest.raises(ConfigError, match="hash, classifier, ranking"):
        make_reward_model("motif")


@pytest.mark.slow
def test_classifier_on_real_minilm_embeddings() -> None:
    model = ClassifierReward(background=False)  # the shipped all-MiniLM-L6-v2
    model.update(LABELS)
    model.step()
    model.reward(["You kill the grid bug!", "It's a solid stone wall."])
    model.step()
    kill, wall = model.reward(["You kill the grid bug!", "It's a solid stone wall."])
    assert kill > wall


def test_background_error_is_logged_counted_and_in_the_run_metrics(tmp_path, caplog) -> None:
    import logging

    from llmguide.agents.oni import ONIMethod

    from llmguide.core import prepare

    class BrokenEmbedder:
        def encode(self, texts):
            raise RuntimeError("embedding model file is missing")

    caplog.set_level(logging.ERROR, logger="llmguide.oni")
    model = ClassifierReward(embedder=BrokenEmbedder(), refit_every_s=0.0)
    try:
        model.update(LABELS)
        deadline = time.monotonic() + 10
        while model.stats()["errors"] < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = model.stats()
        assert stats["errors"] >= 3 and stats["error"] == "RuntimeError: embedding model file is missing"
        logged = [r for r in caplog.records if r.name == "llmguide.oni.reward"]
        assert len(logged) == 1 and "embedding model file is missing" in logged[0].getMessage()  # once, not per retry
        assert model.reward(["You kill the newt!", "It's a wall."]).tolist() == [1.0, 0.0]  # exact labels meanwhile
        prepared = prepare({"method": "oni", "reward_model": "classifier"})
        method = ONIMethod(prepared.config, prepared.settings, tmp_path)
        method.reward_model = model  # what start() makes
        extras = method.extras()
        assert extras["reward_model_errors"] >= 3 and "missing" in extras["reward_model_error"]
    finally:
        model.close()


@pytest.mark.slow
def test_remote_classifier_trains_in_its_own_process(caplog) -> None:
    import logging
    import os
    import signal
    from pathlib import Path

    caplog.set_level(logging.ERROR, logger="llmguide.oni")
    cpu = max(os.sched_getaffinity(0))
    model = make_reward_model("classifier", remote=True, cpus=[cpu], nice=3)
    try:
        assert model.stats()["remote"] and os.sched_getaffinity(model.stats()["pid"]) == {cpu}
        model.update(LABELS)
        unseen = ["You kill the grid bug!", "It's a solid stone wall."]
        t0 = time.perf_counter()
        assert model.reward(unseen).tolist() == [0.0, 0.0]  # not scored yet: 0 at once, never a wait
        assert time.perf_counter() - t0 < 0.05
        assert model.wait_until_scored(unseen, timeout=300)  # MiniLM + logistic regression in the child
        kill, wall = model.reward(unseen)
        assert kill > wall
        stats = model.stats()
        assert stats["fitted"] and stats["fits"] >= 1 and stats["embedded"] >= 8 and stats["errors"] == 0
        pid = stats["pid"]
        model.restart_backoff_s = 2.0
        os.kill(pid, signal.SIGKILL)  # the trainer dies: surfaced, the learner goes on with the last scores
        deadline = time.monotonic() + 10
        while model.stats()["alive"] and time.monotonic() < deadline:
            model.reward(unseen)
            time.sleep(0.1)
        stats = model.stats()
        assert not stats["alive"] and "died" in stats["error"] and "restarting" in stats["error"] and stats["errors"] == 1
        assert model.reward(unseen).tolist() == [kill, wall]
        assert not Path(f"/proc/{pid}").exists()  # reaped
        assert len([r for r in caplog.records if "died" in r.getMessage()]) == 1
        # restarted after the backoff with every label re-sent: a caption never seen before gets scored
        later = ["You kill the sewer rat!"]
        assert model.wait_until_scored(later, timeout=300)
        stats = model.stats()
        assert stats["alive"] and stats["restarts"] == 1 and stats["pid"] != pid and stats["downtime_s"] >= 2.0, stats
        assert stats["fitted"] and model.reward(later)[0] > model.reward(["It's a solid stone wall."])[0]
    finally:
        model.close()
