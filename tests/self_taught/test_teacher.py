"""The self-taught teacher on the real embedded model: LoRA steps on real hindsight raise the
hindsight answer's likelihood; a stage announced in the run dir is hot-swapped in and changes the
teacher's choice; the background worker runs a stage with its probe; every subgoal kind works."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import minigrid  # noqa: F401  (registers the ids)
import pytest
from llmguide.agents.hindsight import HindsightRecorder, expert_episode
from llmguide.envs.minigrid import make_minigrid
from llmguide.teachers.lora_tuning import AdapterLM, load_examples
from llmguide.teachers.minigrid_planning import minigrid_base
from llmguide.teachers.self_taught import (
    SelfTaughtTeacher,
    situation_from_env,
    situation_key,
    situation_messages,
    target_options,
)

from llmguide.errors import ConfigError


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> AdapterLM:
    model = AdapterLM("smollm2", lora_r=4, seed=0)
    model.plain = model.save(tmp_path_factory.mktemp("plain") / "stage_0")  # LoRA B = 0: the plain model
    return model


@pytest.fixture(scope="module")
def hindsight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Hindsight rows of two real DoorKey episodes (played by the scripted expert, to be quick)."""
    path = tmp_path_factory.mktemp("hindsight") / "hindsight.jsonl"
    env = HindsightRecorder(make_minigrid("MiniGrid-DoorKey-5x5-v0"), path)
    for seed in (3, 4):
        assert expert_episode(env, seed)
    return path


def _doorkey() -> gym.Env:
    env = HindsightRecorder(make_minigrid("MiniGrid-DoorKey-5x5-v0"))
    env.reset(seed=3)
    return env


def test_a_stage_on_hindsight_raises_the_answers_likelihood(lm: AdapterLM, hindsight: Path) -> None:
    lm.load_stage(lm.plain, 0)
    examples = load_examples(hindsight)
    rows = [json.loads(line) for line in hindsight.read_text().splitlines()]
    assert len(examples) == len(rows) == 4

    def answer_scores() -> list[float]:
        return [lm.option_logprobs(r["messages"], r["options"])[r["options"].index(r["answer"])] for r in rows]

    before = answer_scores()
    losses = lm.train_steps(examples, steps=2, lr=3e-3, batch_size=4)
    assert losses[-1] < losses[0]
    assert sum(answer_scores()) > sum(before)


def test_hot_swap_changes_the_teachers_choice(lm: AdapterLM, tmp_path: Path) -> None:
    lm.load_stage(lm.plain, 0)
    teacher = SelfTaughtTeacher("object", lora_r=4, probe_episodes=0)
    teacher.bind(tmp_path)
    teacher._lm = lm
    env = _doorkey()
    info = {"situation": env.situation()}
    first = teacher.propose(env, info).subgoal
    assert first is not None and teacher.stats.llm_queries == 1
    assert teacher.propose(env, info).cache_hit  # same situation, same stage: cached
    # a stage tuned on hindsight that answers otherwise in this very situation
    options = [o for o, _ in target_options(env)]
    wanted = next(o for o in options if not o.endswith(first.text))
    lm.train_steps([(situation_messages(info["situation"], options), wanted)] * 4, steps=3, lr=5e-3, batch_size=4)
    lm.save(teacher.stage_dir(1))
    lm.load_stage(lm.plain, 0)  # back to the plain weights: only the swap can bring stage 1 in
    (tmp_path / "self_taught" / "current.json").write_text('{"stage": 1}')  # what the stage driver announces
    teacher._checked_at = 0.0
    second = teacher.propose(env, info)
    assert teacher.stage == 1 and lm.stage == 1
    assert not second.cache_hit and second.subgoal is not None and wanted.endswith(second.subgoal.text)


def test_a_cached_answer_serves_a_layout_that_differs_only_in_colours(lm: AdapterLM, tmp_path: Path) -> None:
    """MultiRoom and KeyCorridor recolour every layout: the answer, asked once (here through the
    asynchronous path), is reused with the new layout's colours instead of asking the LLM again."""
    lm.load_stage(lm.plain, 0)
    teacher = SelfTaughtTeacher("object", lora_r=4, probe_episodes=0)
    teacher.bind(tmp_path)
    teacher._lm = lm
    env = _doorkey()
    yellow = situation_from_env(env)
    question = teacher.propose(env, {"situation": yellow}, defer=True).question
    first = teacher.answer(question).subgoal
    assert first is not None and "yellow" in first.text and teacher.stats.llm_queries == 1
    for obj in minigrid_base(env).grid.grid:
        if obj is not None and obj.color == "yellow":
            obj.color = "red"
    red = situation_from_env(env)
    assert red != yellow and situation_key(red, [o for o, _ in target_options(env)]) in question.key
    second = teacher.propose(env, {"situation": red})
    assert second.cache_hit and teacher.stats.llm_queries == 1
    assert second.subgoal is not None and second.subgoal.text == first.text.replace("yellow", "red")


@pytest.mark.slow
def test_background_worker_runs_a_stage_with_its_probe(lm: AdapterLM, hindsight: Path, tmp_path: Path) -> None:
    teacher = SelfTaughtTeacher("object", lora_r=4, stage_examples=4, stage_steps=2, batch_size=4, probe_episodes=0)
    teacher.bind(tmp_path)
    teacher._lm = lm
    assert not teacher.start_stage()  # no hindsight yet
    teacher.hindsight_path.write_text(hindsight.read_text())
    rows = [json.loads(line) for line in hindsight.read_text().splitlines()][:2]
    teacher.probe_path.write_text("".join(json.dumps({k: r[k] for k in ("messages", "options", "answer")}) + "\n"
                                          for r in rows))
    assert teacher.start_stage(step=100) and not teacher.start_stage(step=100)  # one stage at a time
    record = teacher.poll(step=200, wait=None)
    assert record is not None and record.ok, record
    assert record.examples == 4 and record.probe_n == 2 and record.probe_before is not None
    assert teacher.stage == 1 and lm.stage == 1
    assert json.loads((tmp_path / "self_taught" / "current.json").read_text())["stage"] == 1
    again = SelfTaughtTeacher("object", lora_r=4)
    again.bind(tmp_path)
    again.load_state_dict(teacher.state_dict())  # what a resumed run restores
    assert again.stage == 1 and again.examples_used == 4 and again.stages[0].swapped_step == 200
    assert not again.start_stage()  # no new examples since


@pytest.mark.parametrize("kind", ["positional", "language"])
def test_other_kinds_choose_among_their_own_subgoals(lm: AdapterLM, kind: str) -> None:
    teacher = SelfTaughtTeacher(kind, probe_episodes=0)
    teacher._lm = lm
    env = _doorkey()
    proposal = teacher.propose(env, {"situation": env.situation()})
    assert proposal.subgoal is not None and proposal.subgoal.kind == kind
    assert proposal.subgoal.key in {sg.key for _, sg in target_options(env, kind)}
    other = _doorkey()
    deferred = teacher.propose(other, {"situation": {**other.situation(), "done": ["dropped yellow key"]}}, defer=True)
    assert deferred.subgoal is None and deferred.question is not None  # a new situation: asked off the env loop
    assert teacher.answer(deferred.question).subgoal.kind == kind


def test_bad_settings_are_readable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="stage_examples"):
        SelfTaughtTeacher("object", stage_examples=0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    with pytest.raises(ConfigError, match="not an example"):
        load_examples(bad)
