"""The `scienceworld` agent method on the core: plans, run record, extras, resume state, config errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from llmguide.agents import scienceworld as sw

from llmguide.core import evaluate, prepare, run
from llmguide.errors import ConfigError
from llmguide.llm import METER
from llmguide.training import RunInterrupted

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="ScienceWorld needs Java")

RANDOM = {"method": "scienceworld", "agent": "random", "tasks": ["find-living-thing"], "variations": [0], "max_steps": 4}


def _lines(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]


# -- config (no JVM) -------------------------------------------------------------------------------
def test_misspelled_key_names_the_key_and_the_method() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'top_kk' for method 'scienceworld'\. Did you mean 'top_k'\?"):
        prepare({**RANDOM, "top_kk": 3})
    with pytest.raises(ConfigError, match=r"unknown key 'teachr' for method 'scienceworld_rl'\. Did you mean 'teacher'\?"):
        prepare({"method": "scienceworld_rl", "teachr": "gold"})


def test_configs_validate_values_and_budgets() -> None:
    agent = prepare({"method": "scienceworld"})
    assert agent.settings.episodes == 1 and agent.config.env == "llmguide/ScienceWorld-v0"
    trained = prepare({"method": "scienceworld_rl"})
    assert trained.settings.total_steps == 2048 and trained.config.learner == "MaskablePPO"
    assert prepare({"method": "scienceworld_rl", "teacher": None}).config.teacher == "none"
    for bad in ({"agent": "smart"}, {"variations": []}, {"top_k": 0}, {"split": "val"}, {"rank": "bm25"},
                {"total_steps": 10}, {"env": "MiniGrid-Empty-5x5-v0"}, {"tasks": []}):
        with pytest.raises(ConfigError, match="scienceworld"):
            prepare({"method": "scienceworld", **bad})
    with pytest.raises(ConfigError, match=r"unknown ScienceWorld task 'boyl'\. Did you mean boil"):
        prepare({"method": "scienceworld", "tasks": ["find-living-thing", "boyl"]})
    assert prepare({"method": "scienceworld", "tasks": ["1-1", "melt"]}).config.tasks == ["1-1", "melt"]
    for bad in ({"task": "boyl"}, {"teacher": "oracle"}, {"bonus": 0.5, "max_bonus": 0.3}, {"episodes": 2},
                {"teacher": "llm", "vec_env": "subproc"}):
        with pytest.raises(ConfigError):
            prepare({"method": "scienceworld_rl", **bad})


def test_label_names_the_knowledge_switches() -> None:
    def label(**kw: Any) -> str:
        p = prepare({"method": "scienceworld", **kw})
        return p.method_cls(p.config, p.settings, Path(".")).label()

    assert label(agent="random") == "scienceworld:random"
    assert label(agent="ranker", memory=True) == "scienceworld:ranker+memory"
    assert label(memory=True, affordances=True) == "scienceworld:llm+memory+affordances"
    assert label(name="mine") == "mine"


def test_eval_build_reads_memory_but_never_learns(tmp_path: Path) -> None:
    memory = sw.ListActionMemory()
    p = prepare({"method": "scienceworld", "rank": "overlap"}, {"llm": FakeListChatModel(responses=["x"]), "memory": memory})
    method = p.method_cls(p.config, p.settings, tmp_path, p.objects)
    run_agent, eval_agent = method.build(), method.build(for_eval=True)
    assert run_agent.memory is memory and run_agent.learn and run_agent.log_dir == tmp_path / "logs"
    assert eval_agent.memory is memory and not eval_agent.learn and eval_agent.log_dir == tmp_path / "eval_logs"
    assert method.label() == "scienceworld:llm+memory"


# -- runs on the core ------------------------------------------------------------------------------
@needs_java
def test_plan_is_task_variation_repeat(tmp_path: Path) -> None:
    p = prepare({**RANDOM, "tasks": ["find-living-thing", "boil"], "variations": [0, 1]})
    method = p.method_cls(p.config, p.settings, tmp_path)
    plans = method.plan(2, seed=10)
    assert [pl.tag for pl in plans[:3]] == ["find-living-thing[0]#0", "find-living-thing[1]#0", "boil[0]#0"]
    assert plans[4].tag == "find-living-thing[0]#1" and plans[4].setup == {"task": "find-living-thing", "variation": 0}
    assert len(plans) == 8 and [pl.seed for pl in plans] == list(range(10, 18))
    assert [(pl.tag, pl.seed) for pl in method.plan(1, seed=10)] == [(pl.tag, pl.seed) for pl in plans[:4]]
    assert not method._envs  # explicit variations need no JVM
    p = prepare({**RANDOM, "variations": 2, "split": "test"})
    method = p.method_cls(p.config, p.settings, tmp_path)
    try:
        first = method.variations("find-living-thing")
        assert len(first) == 2 and len(method._envs) == 1  # the split's pool, from the task's env
        method.plan(1, seed=0)
        assert len(method._envs) == 1  # re-used, not a second JVM
    finally:
        method.close()
    assert not method._envs


@needs_java
def test_random_arm_runs_on_the_core_and_evaluates(tmp_path: Path) -> None:
    metrics = run(prepare({**RANDOM, "episodes": 2, "variations": [0, 1]}), tmp_path)
    assert (metrics.method, metrics.kind, metrics.episodes) == ("scienceworld", "agent", 4)
    assert metrics.label == "scienceworld:random" and metrics.llm_calls == 0
    assert metrics.score is not None and 0 <= metrics.score <= 100 and 0 <= metrics.steps <= 16
    x = metrics.extras
    assert x["agent"] == "random" and x["per_task_score"].keys() == {"find-living-thing"}
    assert 0 <= x["failure_rate"] <= 1 and x["llm_calls_per_decision"] is None and x["memory_size"] == 0
    rows = _lines(tmp_path)
    assert [r["extra"]["tag"] for r in rows] == ["find-living-thing[0]#0", "find-living-thing[1]#0",
                                                "find-living-thing[0]#1", "find-living-thing[1]#1"]
    assert [r["extra"]["variation"] for r in rows] == [0, 1, 0, 1]
    out = evaluate(tmp_path, episodes=1)
    assert out["episodes"] == 2 and (tmp_path / "eval.json").exists()  # one per variation


@needs_java
@pytest.mark.slow
def test_interrupted_random_run_resumes_to_the_same_episodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = {**RANDOM, "episodes": 3, "max_steps": 6}
    whole = run(prepare(cfg), tmp_path / "whole")
    calls = {"n": 0}
    act = sw.RandomValidAgent.act

    def stop_in_episode_two(self: Any, obs: Any, info: dict[str, Any]) -> int:
        calls["n"] += 1
        if calls["n"] > whole.curve[0].steps:  # past the first episode's steps
            raise KeyboardInterrupt
        return act(self, obs, info)

    monkeypatch.setattr(sw.RandomValidAgent, "act", stop_in_episode_two)
    with pytest.raises(RunInterrupted):
        run(prepare(cfg), tmp_path / "cut")
    first = (tmp_path / "cut" / "episodes.jsonl").read_text().splitlines()
    assert len(first) == 1
    monkeypatch.setattr(sw.RandomValidAgent, "act", act)
    resumed = run(prepare({**cfg, "resume": True}), tmp_path / "cut")
    assert resumed.resumes == 1 and resumed.episodes == 3
    assert (tmp_path / "cut" / "episodes.jsonl").read_text().splitlines()[0] == first[0]
    key = [(r["length"], r["extra"]["score"]) for r in _lines(tmp_path / "whole")]
    assert [(r["length"], r["extra"]["score"]) for r in _lines(tmp_path / "cut")] == key  # each episode seeds its draws
    assert resumed.score == whole.score and resumed.extras["per_task_score"] == whole.extras["per_task_score"]


@needs_java
@pytest.mark.slow
def test_llm_arm_with_memory_and_gold_seeding(tmp_path: Path) -> None:
    """A fake model through the whole LLM path: gold-seeded memory, logs per episode, cost per decision, resume state."""
    llm = {"llm": FakeListChatModel(responses=['{"choice": "nonsense"}'] * 200, callbacks=[METER])}
    cfg = {"method": "scienceworld", "tasks": ["find-living-thing"], "variations": [0], "max_steps": 3,
           "memory": "run_dir", "affordances": True, "seed_gold": 1, "rank": "overlap", "top_k": 4}
    metrics = run(prepare(cfg, llm), tmp_path)
    x = metrics.extras
    assert metrics.label == "scienceworld:llm+memory+affordances" and metrics.episodes == 1
    assert x["memory_size"] >= 1 and (tmp_path / "memory").is_dir()  # the gold path raised the score
    assert x["decisions"] == 3 and x["llm_calls_per_decision"] >= 1
    assert x["llm_differs_from_ranker"] == 0.0  # every invalid answer fell back to the ranker's top candidate
    assert metrics.llm_calls >= 3
    assert (tmp_path / "logs" / "find-living-thing-v0-s0.jsonl").exists()
    state = json.loads((tmp_path / "checkpoints" / "state.json").read_text())["method_state"]
    assert state["decisions"] == 3 and len(state["outcomes"]) == 1
    # a resume with a larger budget continues the counters it saved
    more = run(prepare({**cfg, "episodes": 2, "resume": True}, llm), tmp_path)
    assert more.episodes == 2 and more.resumes == 1 and more.extras["decisions"] == 6
    assert (tmp_path / "logs" / "find-living-thing-v0-s1.jsonl").exists()


@needs_java
def test_ranker_arm_isolates_the_llm(tmp_path: Path) -> None:
    """No LLM at all: the pre-filter's top candidate (memory hits first) is what an LLM arm must beat."""
    cfg = {"method": "scienceworld", "agent": "ranker", "tasks": ["find-living-thing"], "variations": [0],
           "max_steps": 3, "memory": True, "seed_gold": 1, "rank": "overlap", "top_k": 4}
    metrics = run(prepare(cfg), tmp_path)
    x = metrics.extras
    assert metrics.label == "scienceworld:ranker+memory" and metrics.llm_calls == 0
    assert x["agent"] == "ranker+memory" and x["decisions"] >= 1 and x["llm_differs_from_ranker"] is None
    steps = [json.loads(line) for line in (tmp_path / "logs" / "find-living-thing-v0-s0.jsonl").read_text().splitlines()]
    assert all(step["choice"] == step["candidates"][0] for step in steps)
