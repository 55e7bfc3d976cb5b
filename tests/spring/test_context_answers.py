"""SPRING's two-part DAG: game-context answers once per game, prefix-stable prompts, fast mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from llmguide.agents.loop import run_episodes
from llmguide.agents.spring import SpringAgent
from llmguide.teachers.spring import QuestionDag, load_dag
from pydantic import Field

from llmguide.errors import ConfigError

from .test_agent import TinyCrafter


class ScriptedModel(BaseChatModel):
    """Answers a DAG question with 'ans:<question>', a listed choice with {"choice": "do"}; records prompts."""

    seen: list = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
        last = str(messages[-1].content)
        self.seen.append([m.content for m in messages])
        text = '{"choice": "do"}' if "Answer with JSON" in last else "ans:" + last.rsplit("Q: ", 1)[-1]
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def questions(self) -> list[str]:
        return [p[-1].rsplit("Q: ", 1)[-1] for p in self.seen if "Answer with JSON" not in p[-1]]


def test_context_answers_are_asked_once_per_game_and_sit_in_every_system_turn(tmp_path: Path) -> None:
    dag = load_dag(None)
    llm = ScriptedModel()
    agent = SpringAgent(llm=llm, context="THE MANUAL", log_dir=tmp_path)
    run_episodes(agent, TinyCrafter(), 2, max_steps=3, progress=False)
    asked = llm.questions()
    context_questions = [dag.nodes[n].question for n in dag.context_nodes]
    assert [asked.count(q) for q in context_questions] == [1, 1, 1, 1]  # 6 steps, asked once
    assert len(asked) == 4 + 6 * len(dag.situation_nodes)
    system = dag.system_text("THE MANUAL", agent.last_answers)
    assert system.startswith("THE MANUAL") and all(f"ans:{q}" in system for q in context_questions)
    situational = [p for p in llm.seen if p[-1].rsplit("Q: ", 1)[-1] not in context_questions]
    assert all(p[0] == system for p in situational)  # choices included: the scorer keeps it evaluated
    # a second agent on the same model and context reuses them; another context asks again
    SpringAgent(llm=llm, context="THE MANUAL").act(None, TinyCrafter().reset(seed=0)[1])
    assert llm.questions().count(context_questions[0]) == 1
    SpringAgent(llm=llm, context="ANOTHER MANUAL").act(None, TinyCrafter().reset(seed=0)[1])
    assert llm.questions().count(context_questions[0]) == 2
    rows = [json.loads(ln) for ln in (tmp_path / "episode_001.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows[0]["context_answers"]] == dag.context_nodes  # logged once per episode
    steps = [r for r in rows if "step" in r]
    assert [n["id"] for n in steps[0]["nodes"]] == dag.situation_nodes and all(s["seconds"] >= 0 for s in steps)


def test_fast_mode_asks_only_the_fast_node_then_chooses(tmp_path: Path) -> None:
    llm = ScriptedModel()
    agent = SpringAgent(llm=llm, context="FAST MANUAL", fast=True)
    records = run_episodes(agent, TinyCrafter(), 1, max_steps=4, progress=False)
    assert records[0].length == 4 and agent.invalid_actions == 0
    dag = agent.dag
    per_step = llm.seen[len(dag.context_nodes):]
    assert len(per_step) == 4 * 2  # one question and one choice a step
    node_prompts = per_step[0::2]
    assert all(p[-1].startswith("You face a tree.") and p[-1].endswith("Q: " + dag.nodes["next_action"].question) for p in node_prompts)
    assert list(agent.last_answers) == [*dag.context_nodes, "next_action"]
    timing = agent.timing()
    assert timing["warm_s_per_step_median"] is not None and timing["first_step_s"] >= 0


def test_scope_and_fast_are_validated() -> None:
    with pytest.raises(ConfigError, match="'rules'.*situational"):
        QuestionDag.from_dict({"nodes": [
            {"id": "seen", "question": "What is near?"},
            {"id": "rules", "question": "Rules?", "scope": "context", "parents": ["seen"]},
            {"id": "act", "question": "Action?", "parents": ["seen", "rules"]}]})
    with pytest.raises(ConfigError, match="scope 'global'"):
        QuestionDag.from_dict({"nodes": [{"id": "a", "question": "A?", "scope": "global"}]})
    with pytest.raises(ConfigError, match="`fast:` lists 'rules'"):
        QuestionDag.from_dict({"fast": ["rules"], "nodes": [
            {"id": "rules", "question": "Rules?", "scope": "context"}, {"id": "act", "question": "Action?"}]})
    with pytest.raises(ConfigError, match="context node"):
        QuestionDag.from_dict({"final": "rules", "nodes": [
            {"id": "rules", "question": "Rules?", "scope": "context"}, {"id": "act", "question": "Action?"}]})
    # a context node nobody depends on is not taken for the final node
    dag = QuestionDag.from_dict({"nodes": [{"id": "rules", "question": "Rules?", "scope": "context"},
                                           {"id": "act", "question": "Action?"}]})
    assert dag.final == "act" and dag.context_nodes == ["rules"]


def test_prompts_extend_each_other_in_the_models_own_tokens() -> None:
    """With the real chat template and tokenizer, each situational node's prompt is the previous
    prompt plus its answer plus one question, so llama.cpp evaluates only that suffix."""
    from llmguide.llm import load
    from llmguide.llm.llamacpp import _to_openai_messages, chat_prompt_tokens

    llama, _ = load("smollm2", n_ctx=4096)._llama()
    dag = load_dag(None)
    agent = SpringAgent(llm=ScriptedModel(), context="manual")
    info = TinyCrafter().reset(seed=0)[1]
    answers = dag.context_answers(agent.llm, agent.context)
    observation = agent.observation(info)
    previous: list[int] = []
    for n in dag.situation_nodes:
        tokens = chat_prompt_tokens(llama, _to_openai_messages(dag.prompt(dag.nodes[n], agent.context, observation, answers)))
        if previous:
            assert tokens[: len(previous)] == previous
            assert len(tokens) - len(previous) < 40 < len(previous)  # only the answer and the question are new
        previous = tokens
        answers[n] = dag.ask(agent.llm, dag.nodes[n], agent.context, observation, answers)
    system = chat_prompt_tokens(llama, _to_openai_messages([SystemMessage(content=dag.system_text(agent.context, answers))]))
    choice = chat_prompt_tokens(llama, _to_openai_messages(agent.choice_prompt(observation, answers[dag.final], answers)))
    shared = len(system) - 5  # the system turn, less the template's closing tokens
    assert choice[:shared] == previous[:shared] and len(choice) - shared < 60
