"""choose() modes: likelihood scoring on the real embedded model, its cost and cache,
the per-site meter, and the OpenAI-compatible path with and without prompt logprobs."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage

from llmguide.llm import METER, ChatLlamaCpp, choose, load
from llmguide.llm.llamacpp import _to_openai_messages, chat_prompt_tokens
from llmguide.llm.openai_compat import ChatOpenAICompatible

CRAFTER = ["noop", "move_left", "move_right", "move_up", "move_down", "do", "sleep", "place_stone", "place_table",
           "place_furnace"]


def _benchmark() -> Any:
    """benchmarks/choice.py, whose probe set the consistency test asks."""
    if "choice_benchmark" in sys.modules:
        return sys.modules["choice_benchmark"]
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "choice.py"
    spec = importlib.util.spec_from_file_location("choice_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["choice_benchmark"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# -- scoring on the embedded model -----------------------------------------------------
def test_score_mode_is_the_llamacpp_default_and_returns_an_option(smollm2: ChatLlamaCpp) -> None:
    METER.reset()
    answer = choose(smollm2, "You face a tree. What do you do?", CRAFTER)
    assert answer in CRAFTER
    site = METER.snapshot().choices[__name__]
    assert site["modes"] == {"score": 1} and site["calls"] == 1 and site["fallbacks"] == 0


def test_scores_are_the_mean_token_logprob_of_each_whole_reply(smollm2: ChatLlamaCpp) -> None:
    """Against a reference Llama that keeps every row of logits (logits_all)."""
    import llama_cpp

    messages = [HumanMessage(content="Which colour is the sky?")]
    options = ["blue", "green", "dark red"]
    scores, _ = smollm2.score_options(messages, options)
    ref = llama_cpp.Llama(smollm2.model_path, n_ctx=512, logits_all=True, verbose=False)
    prompt = chat_prompt_tokens(ref, _to_openai_messages(messages))
    for option, score in zip(options, scores):
        reply = ref.tokenize(option.encode(), add_bos=False) + [ref.token_eos()]
        ref.reset()
        ref.eval(prompt + reply)
        rows = ref.scores[len(prompt) - 1 : len(prompt) - 1 + len(reply)].astype(np.float64)
        logprobs = [row[t] - row.max() - np.log(np.exp(row - row.max()).sum()) for row, t in zip(rows, reply)]
        assert score == pytest.approx(float(np.mean(logprobs)), abs=0.1)


def test_the_prompt_is_evaluated_once_for_all_options(smollm2: ChatLlamaCpp) -> None:
    llama, _ = smollm2._llama()
    messages = [HumanMessage(content="Crafter. You see a tree in front of you and hold nothing. Which action?")]
    prompt = chat_prompt_tokens(llama, _to_openai_messages(messages))
    replies = [tuple(llama.tokenize(o.encode(), add_bos=False)) + (llama.token_eos(),) for o in CRAFTER]
    nodes = {r[:depth] for r in replies for depth in range(1, len(r))}  # proper prefixes: one forward pass each
    assert len(nodes) < sum(map(len, replies)) - len(CRAFTER)  # shared prefixes (move_, place_) count once
    smollm2.score_options([HumanMessage(content="Another question entirely?")], CRAFTER)
    scores, evaluated = smollm2.score_options(messages, CRAFTER)
    assert 1 < evaluated - len(nodes) < len(prompt)  # the new prompt, less the chat template's common start (system turn)
    again, evaluated_again = smollm2.score_options(messages, CRAFTER[::-1])
    assert evaluated_again == 1 + len(nodes)  # the prompt is held: only its last token is redone
    assert again[::-1] == pytest.approx(scores, abs=1e-6)  # the order they are listed in changes nothing
    answer = smollm2.invoke(messages, max_tokens=4)  # generation after scoring is unaffected
    assert isinstance(answer.content, str)


def test_scoring_after_generation_reuses_the_generation_contexts_prompt(smollm2: ChatLlamaCpp) -> None:
    """An agent that reasons, then chooses (DiLu): the scorer copies the prompt's KV state from the
    generation context instead of evaluating the prompt again, and scores as if it had."""
    from langchain_core.messages import AIMessage
    from llmguide.llm.llamacpp import _scorer

    llama, _ = smollm2._llama()
    scene = " ".join(f"Car {i} is {12 + 3 * i} m ahead in lane {i % 3}." for i in range(25))
    messages = [HumanMessage(content=f"{scene} What should the ego car do?")]
    reasoning = smollm2.invoke(messages, max_tokens=8).content
    decision = [*messages, AIMessage(content=reasoning or "(none)"), HumanMessage(content="So the final decision is:")]
    options = ["IDLE", "FASTER", "SLOWER", "LANE_LEFT"]
    prompt = chat_prompt_tokens(llama, _to_openai_messages(decision))
    smollm2.score_options([HumanMessage(content="Another question entirely?")], options)  # the scorer holds another prompt
    adopted, evaluated = smollm2.score_options(decision, options)
    assert evaluated < len(prompt) // 4  # the scene was not evaluated again
    _scorer(llama).reset()  # the scorer alone, from nothing (score_options would adopt again)
    replies = [llama.tokenize(o.encode(), add_bos=False) + [llama.token_eos()] for o in options]
    fresh, evaluated_fresh = _scorer(llama).score(prompt, replies)
    assert evaluated_fresh > len(prompt) - 2
    assert adopted == pytest.approx(fresh, abs=0.3)  # same state, other batch layout: small numeric drift only


@pytest.mark.slow
def test_scoring_is_permutation_consistent_on_the_benchmark_probes(smollm2: ChatLlamaCpp) -> None:
    """The benchmark's DoorKey and highway probes (its defaults; Crafter's take minutes to find),
    every rotation of the options listed in the prompt. Measured there: 9 of 10 consistent."""
    bench = _benchmark()
    probes = bench.doorkey_probes([0, 1]) + bench.highway_probes(4, list(range(12)))
    rows = bench.ask_all(smollm2, probes, "score")
    summary = bench.summarise(rows)
    assert summary["consistency"] >= 0.8, summary
    assert abs(summary["first_option_rate"] - summary["one_over_n"]) <= 0.05, summary


def test_scores_are_cached_and_counted_as_hits(smollm2: ChatLlamaCpp, fresh_cache: Path) -> None:
    llm = load("smollm2", n_ctx=2048)  # temperature 0: the response cache is on
    llama, _ = llm._llama()
    first = choose(llm, "Pick the fruit.", ["apple", "chair", "cloud"])
    llama.reset()  # a real second evaluation would now re-read the whole prompt
    METER.reset()
    assert choose(llm, "Pick the fruit.", ["apple", "chair", "cloud"]) == first
    snap = METER.snapshot()
    assert (snap.calls, snap.cache_hits) == (1, 1)
    assert llama.n_tokens == 0  # nothing was evaluated for the cached answer


def test_when_scoring_cannot_run_the_choice_is_generated_shuffled(
    smollm2: ChatLlamaCpp, monkeypatch: pytest.MonkeyPatch
) -> None:
    def too_long(*args: Any) -> None:
        raise ValueError("prompt does not fit in n_ctx")

    monkeypatch.setattr(ChatLlamaCpp, "score_options", too_long)
    METER.reset()
    assert choose(smollm2, "Yes or no?", ["yes", "no"], site="long") in ("yes", "no")
    snap = METER.snapshot()
    assert snap.fallback_reasons == {"choose:score_unavailable": 1}
    assert snap.choices["long"]["modes"] == {"shuffle": 1} and snap.choices["long"]["fallbacks"] == 1


def test_a_real_prompt_too_long_for_the_context_is_refused_by_scoring(smollm2: ChatLlamaCpp) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        smollm2.score_options([HumanMessage(content="word " * 2100)], ["yes", "no"])


# -- the meter ---------------------------------------------------------------------------
def test_meter_counts_first_options_and_ranks_per_site() -> None:
    METER.reset()
    assert METER.snapshot().first_option_rate is None and METER.snapshot().choices == {}
    options = ["a", "b", "c", "d"]
    for reply in ["a", "a", "c"]:
        choose(FakeListChatModel(responses=[json.dumps({"choice": reply})]), "?", options, site="teacher")
    choose(FakeListChatModel(responses=['{"choice": "y"}']), "?", ["x", "y"], site="agent")
    choose(FakeListChatModel(responses=["no idea"] * 3), "?", ["x", "y"], site="agent", default="y")
    snap = METER.snapshot()
    assert snap.choices["teacher"] == {
        "calls": 3, "first_option": 2, "first_option_rate": 2 / 3, "modes": {"generate": 3},
        "rank_counts": [2, 0, 1], "fallbacks": 0, "options_mean": 4.0,
    }
    assert snap.choices["agent"]["rank_counts"] == [0, 2] and snap.choices["agent"]["fallbacks"] == 1
    assert snap.first_option_rate == pytest.approx(2 / 5)
    assert snap.as_dict()["choices"]["agent"]["calls"] == 2


def test_default_site_is_the_callers_module_and_one_option_is_not_a_choice() -> None:
    METER.reset()
    choose(FakeListChatModel(responses=['{"choice": "b"}']), "?", ["a", "b"])
    choose(FakeListChatModel(responses=["x"]), "?", ["only"])
    assert list(METER.snapshot().choices) == [__name__]
    assert METER.snapshot().choices[__name__]["calls"] == 1


def test_bad_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        choose(FakeListChatModel(responses=["a"]), "?", ["a", "b"], mode="vote")  # type: ignore[arg-type]


# -- OpenAI-compatible servers -------------------------------------------------------------
def _fake_server(*, logprobs: bool, right: str) -> httpx.MockTransport:
    """A completions endpoint that echoes prompt logprobs (after a question, the token naming
    ``right`` likely, the others not), or answers 500 as llama-cpp-python's server does; and a chat endpoint
    whose 'model' always answers the first option listed in the prompt."""

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path.endswith("/llmguide/score"):  # `llmguide serve`'s route: not on this server
            return httpx.Response(404, json={"detail": "Not Found"})
        if request.url.path.endswith("/completions") and "messages" not in body:
            if not logprobs:
                return httpx.Response(500, json={"error": {"message": "logprobs is not supported"}})
            choices = []
            for i, text in enumerate(body["prompt"]):
                spans = [(m.start(), m.group()) for m in re.finditer(r"\s*\S+|\s+", text)]
                asked = "?" in text  # the question, not the calibration prompt (no question: no knowledge)
                values = [None] + [-0.1 if asked and right in tok else -3.0 for _, tok in spans[1:]]
                choices.append({"index": i, "text": text + "!", "finish_reason": "length", "logprobs": {
                    "tokens": [t for _, t in spans], "token_logprobs": values,
                    "top_logprobs": None, "text_offset": [s for s, _ in spans]}})
            usage = {"prompt_tokens": 40, "completion_tokens": 1, "total_tokens": 41}
            return httpx.Response(200, json={"id": "c", "object": "text_completion", "created": 0, "model": body["model"],
                                             "choices": choices, "usage": usage})
        listing = re.search(r"one of: (.*)\.$", body["messages"][-1]["content"]).group(1)
        first = json.loads(f"[{listing}]")[0]
        message = {"role": "assistant", "content": json.dumps({"choice": first})}
        return httpx.Response(200, json={
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

    return httpx.MockTransport(handle)


def _openai(model: str, transport: httpx.MockTransport) -> ChatOpenAICompatible:
    return ChatOpenAICompatible(model=model, base_url="http://fake.test/v1", api_key="none", cache=False,
                                http_client=httpx.Client(transport=transport), max_retries=0)


def test_openai_scores_from_prompt_logprobs_where_the_server_gives_them() -> None:
    llm = _openai("with-logprobs", _fake_server(logprobs=True, right="east"))
    METER.reset()
    for options in (["north", "east", "south"], ["east", "south", "north"], ["south", "north", "east"]):
        assert choose(llm, "Where does the sun rise?", options, site="sun") == "east"
    site = METER.snapshot().choices["sun"]
    assert site["modes"] == {"score": 3} and site["fallbacks"] == 0 and site["rank_counts"] == [1, 1, 1]


def test_openai_without_logprobs_falls_back_to_shuffled_constrained_generation() -> None:
    """The fake model always answers the first option it is shown: shuffling must spread that."""
    llm = _openai("without-logprobs", _fake_server(logprobs=False, right="east"))
    options = ["a", "b", "c", "d", "e"]
    METER.reset()
    answers = [choose(llm, f"Question {i}?", options, site="server") for i in range(20)]
    assert set(answers) <= set(options) and len(set(answers)) >= 3
    snap = METER.snapshot()
    site = snap.choices["server"]
    assert site["modes"] == {"shuffle": 20} and site["fallbacks"] == 20
    assert site["first_option"] < 10
    assert snap.fallback_reasons == {"choose:score_unavailable": 20}
    assert answers == [choose(llm, f"Question {i}?", options, site="server") for i in range(20)]  # seeded
