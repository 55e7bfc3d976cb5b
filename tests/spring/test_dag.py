"""The question DAG: validation, topological order, parents in prompts, concurrency."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from llmguide.teachers.spring import DEFAULT_DAG_PATH, QuestionDag, load_dag
from pydantic import Field

from llmguide.errors import ConfigError


def _dag(*nodes: tuple[str, list[str]], final: str | None = None) -> QuestionDag:
    data: dict[str, Any] = {"nodes": [{"id": n, "question": f"question {n}?", "parents": p} for n, p in nodes]}
    if final:
        data["final"] = final
    return QuestionDag.from_dict(data)


class EchoModel(BaseChatModel):
    """Answers 'answer-<node>' for the node named in the last line; records prompts and threads."""

    delay: float = 0.0
    barrier: Any = None  # independent nodes wait here for each other: proof they overlap, without a clock
    seen: list = Field(default_factory=list)
    threads: set = Field(default_factory=set)

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
        time.sleep(self.delay)
        text = messages[-1].content
        node = text.rsplit("Q: question ", 1)[1].split("?")[0]
        if self.barrier is not None and node != "d":
            self.barrier.wait(timeout=30)  # BrokenBarrierError if a, b and c ran one after another
        self.seen.append((node, [m.content for m in messages], kw.get("max_tokens")))
        self.threads.add(threading.get_ident())
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=f"answer-{node}"))])


def test_topological_order_and_levels() -> None:
    # declared out of order on purpose: d depends on b and c, which depend on a
    dag = _dag(("d", ["b", "c"]), ("b", ["a"]), ("c", ["a"]), ("a", []))
    assert dag.order == ["a", "b", "c", "d"]
    assert dag.levels == [["a"], ["b", "c"], ["d"]]
    assert dag.final == "d"
    assert dag.ancestors("d") == ["a", "b", "c"]


def test_missing_parent_names_the_node() -> None:
    with pytest.raises(ConfigError, match=r"'subgoal'.*'requirementz'"):
        _dag(("requirements", []), ("subgoal", ["requirementz"]))


def test_cycle_is_reported_with_its_nodes() -> None:
    with pytest.raises(ConfigError, match="cycle") as err:
        _dag(("a", []), ("b", ["a", "d"]), ("c", ["b"]), ("d", ["c"]), ("e", ["d"]), final="e")
    message = str(err.value)
    for node in ("b", "c", "d"):
        assert f"{node} " in message or f" {node}" in message
    assert "'a'" not in message  # a is not on the cycle


def test_self_loop_duplicate_and_ambiguous_final() -> None:
    with pytest.raises(ConfigError, match="cycle"):
        _dag(("a", ["a"]), final="a")
    with pytest.raises(ConfigError, match="declared twice"):
        _dag(("a", []), ("a", []))
    with pytest.raises(ConfigError, match="2 final nodes"):
        _dag(("a", []), ("b", []))
    with pytest.raises(ConfigError, match="final node 'zz'"):
        _dag(("a", []), final="zz")
    with pytest.raises(ConfigError, match="id:"):
        QuestionDag.from_dict({"nodes": [{"question": "no id?"}]})


def test_bad_yaml_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_dag(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_dag(bad)


def test_default_dag_follows_the_papers_two_part_shape() -> None:
    dag = load_dag(None)
    header = DEFAULT_DAG_PATH.read_text().split("max_tokens:")[0].lower()
    assert "follows the structure of the spring paper" in header and "our own" in header
    # part 1: about the game, from the context alone (once per game)
    assert dag.context_nodes == ["achievements", "tools", "dangers", "actions"]
    assert all(not dag.nodes[n].parents for n in dag.context_nodes)
    # part 2: the situation, each node after the ones it builds on; the last gives the action
    assert dag.situation_nodes == ["seen", "last_check", "priority", "requirements", "next_action"]
    assert dag.final == "next_action" and dag.fast == ("next_action",)
    assert dag.ancestors("next_action") == dag.context_nodes + dag.situation_nodes[:-1]  # a chain: prefix reuse
    assert 8 <= len(dag.nodes) <= 10
    text = " ".join(n.question.lower() for n in dag.nodes.values())
    for phrase in ("achievement", "tool", "hurt", "near you", "last action", "priority", "need", "action"):
        assert phrase in text
    assert all((n.max_tokens or dag.max_tokens) <= 16 for n in map(dag.nodes.get, dag.situation_nodes))


def test_run_puts_context_first_and_ancestors_answers_as_turns() -> None:
    dag = _dag(("a", []), ("b", ["a"]), ("c", ["b"]))
    llm = EchoModel(seen=[], threads=set())
    answers = dag.run(llm, "THE MANUAL", "OBSERVATION 7")
    assert list(answers) == ["a", "b", "c"]
    assert answers["c"].answer == "answer-c"
    prompts = {node: msgs for node, msgs, _ in llm.seen}
    assert [n for n, _, _ in llm.seen] == ["a", "b", "c"]
    for msgs in prompts.values():
        assert msgs[0] == "THE MANUAL"  # fixed context first: llama.cpp prefix cache
        assert msgs[1].startswith("OBSERVATION 7")
    assert prompts["a"] == ["THE MANUAL", "OBSERVATION 7\n\nQ: question a?"]
    # c sees its ancestors a (through b) and b, as turns: each prompt extends the previous one
    assert prompts["c"] == ["THE MANUAL", "OBSERVATION 7\n\nQ: question a?", "answer-a", "Q: question b?",
                            "answer-b", "Q: question c?"]
    assert prompts["c"][: len(prompts["b"])] == prompts["b"][:-1] + ["Q: question b?"]
    assert all(mt == dag.max_tokens for _, _, mt in llm.seen)


def test_branches_see_only_their_own_ancestors() -> None:
    dag = _dag(("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"]))
    llm = EchoModel(seen=[], threads=set())
    dag.run(llm, "ctx", "obs")
    prompts = {node: msgs for node, msgs, _ in llm.seen}
    assert "answer-b" not in prompts["c"] and "answer-a" in prompts["c"]
    assert {"answer-a", "answer-b", "answer-c"} <= set(prompts["d"])


def test_per_node_max_tokens_and_answer_trim() -> None:
    dag = QuestionDag.from_dict({
        "max_tokens": 50, "answer_chars": 10,
        "nodes": [{"id": "a", "question": "question a?", "max_tokens": 12}, {"id": "b", "question": "question b?", "parents": ["a"]}],
    })
    llm = EchoModel(seen=[], threads=set())
    dag.run(llm, "ctx", "obs")
    assert [mt for _, _, mt in llm.seen] == [12, 50]
    long = FakeListChatModel(responses=["x" * 50, "y"])  # the answer is trimmed to answer_chars
    assert dag.run(long, "ctx", "obs")["a"].answer == "x" * 10


def test_independent_nodes_run_concurrently() -> None:
    dag = _dag(("a", []), ("b", []), ("c", []), ("d", ["a", "b", "c"]))
    llm = EchoModel(barrier=threading.Barrier(3), seen=[], threads=set())
    answers = dag.run(llm, "ctx", "obs", concurrent=True)
    assert answers["d"].answer == "answer-d"
    assert len(llm.threads) >= 3 and not llm.barrier.broken  # a, b and c were in flight together
    serial = EchoModel(delay=0.0, seen=[], threads=set())
    dag.run(serial, "ctx", "obs")  # default for a non-OpenAI model: sequential
    assert len(serial.threads) == 1
