"""OpenAI-compatible chat model: readable connection errors, and option scoring where the server allows.

A subclass of langchain-openai's ``ChatOpenAI`` (kept, not reimplemented):
it turns ``openai.APIConnectionError``/``APITimeoutError`` into
``BackendUnavailableError`` naming the server and the fix, and adds
``score_options``: the likelihood of each option as the answer, read from the
completions endpoint's echoed prompt log-probabilities (vLLM and OpenAI's
legacy completion models give them; most chat APIs do not, which is
remembered per server so it is asked once). On `llmguide serve` the options
are scored by its ``/v1/llmguide/score`` route, exactly as in-process
llama.cpp scores them (the server's own completions endpoint cannot be used:
see ``llmguide.serve``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import openai
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_openai import ChatOpenAI

from llmguide.errors import BackendUnavailableError
from llmguide.llm.llamacpp import _to_openai_messages  # the same role mapping as in-process chat

__all__ = ["ChatOpenAICompatible", "transcript"]

#: (base URL, model) of servers that gave no prompt log-probabilities in this process
_NO_LOGPROBS: set[tuple[str, str]] = set()
#: (base URL, model) of servers without `llmguide serve`'s scoring route
_NO_SCORE_ROUTE: set[tuple[str, str]] = set()
_ROLES = {"system": "System", "human": "User", "ai": "Assistant"}


def transcript(messages: list[BaseMessage]) -> str:
    """Messages as a plain-text dialogue ending where the assistant answers.

    The completions endpoint takes raw text and the server's chat template is
    not known here, so scoring uses this neutral layout on every server.
    """
    turns = []
    for m in messages:
        turns.append(f"{_ROLES.get(m.type, 'User')}: {m.text}")  # content parts -> their text
    return "\n\n".join([*turns, "Assistant:"])


class ChatOpenAICompatible(ChatOpenAI):
    """``ChatOpenAI`` with readable errors for unreachable servers and option scoring."""

    @property
    def _server_url(self) -> str:
        return str(self.openai_api_base or "https://api.openai.com/v1")

    def _unavailable(self, err: Exception) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"LLM server {self._server_url} is unreachable ({type(err).__name__}). Is it running? "
            "Start a local one with `llmguide serve --port N`, or fix the URL in your `openai:MODEL@URL` spec."
        )

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        try:
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        except (openai.APIConnectionError, openai.APITimeoutError) as err:
            raise self._unavailable(err) from err
        except (openai.RateLimitError, openai.InternalServerError) as err:
            raise BackendUnavailableError(
                f"LLM server {self._server_url} answered {err.status_code} after {self.max_retries} retries ({err.message}). "
                "It is overloaded or failing: lower `requests_per_second`, raise `max_retries`, or give it "
                "more capacity (another `llmguide serve` replica, or vLLM on a GPU host)."
            ) from err

    def score_options(self, messages: list[BaseMessage], options: Sequence[str]) -> tuple[list[float], int] | None:
        """Each option's mean log-probability per token as the answer after ``transcript(messages)``,
        and the prompt tokens the server counted; None when it gives no prompt log-probabilities.

        One request for all options (``echo=True, logprobs=1``), so a server with
        prefix caching (vLLM) evaluates the shared prompt once. ``max_tokens=1``,
        not 0: vLLM rejects 0; the one generated token lies past the option and is
        not counted. Each option is followed by a newline, the end of its turn.
        """
        server = (str(self.openai_api_base), self.model_name)
        if server not in _NO_SCORE_ROUTE:
            try:
                return self._score_on_llmguide_server(messages, options)
            except openai.NotFoundError:
                _NO_SCORE_ROUTE.add(server)  # not `llmguide serve`: try echoed log-probabilities
        if server in _NO_LOGPROBS:
            return None
        prompt = transcript(messages)
        texts = [f"{prompt} {option}\n" for option in options]
        try:
            out = self.root_client.completions.create(
                model=self.model_name, prompt=texts, echo=True, logprobs=1, max_tokens=1, temperature=0
            )
        except (openai.APIConnectionError, openai.APITimeoutError) as err:
            raise self._unavailable(err) from err
        except openai.APIStatusError:
            _NO_LOGPROBS.add(server)
            return None
        scores = [_continuation_logprob(c.logprobs, len(prompt), len(texts[c.index])) for c in out.choices]
        if len(scores) != len(options) or any(s is None for s in scores):
            _NO_LOGPROBS.add(server)
            return None
        order = sorted(range(len(out.choices)), key=lambda i: out.choices[i].index)
        tokens = int(getattr(out.usage, "prompt_tokens", 0) or 0) if out.usage else 0
        return [float(scores[i]) for i in order], tokens  # type: ignore[arg-type]

    def _score_on_llmguide_server(self, messages: list[BaseMessage], options: Sequence[str]) -> tuple[list[float], int] | None:
        """Scores from `llmguide serve`'s ``/llmguide/score`` route (the served GGUF's chat template
        and `OptionScorer`, as in-process); None where it refuses this question (no chat template,
        prompt too long); ``openai.NotFoundError`` where the server has no such route."""
        body = {"model": self.model_name, "options": list(options), "messages": _to_openai_messages(messages)}
        try:
            reply = self.root_client.post("/llmguide/score", body=body, cast_to=httpx.Response)
            found = reply.json()
        except (openai.APIConnectionError, openai.APITimeoutError) as err:
            raise self._unavailable(err) from err
        except openai.NotFoundError:
            raise
        except (openai.APIStatusError, ValueError):
            return None
        scores = found.get("scores") if isinstance(found, dict) else None
        if not isinstance(scores, list) or len(scores) != len(options):
            return None
        return [float(x) for x in scores], int(found.get("evaluated_tokens") or 0)


def _continuation_logprob(logprobs: Any, start: int, end: int) -> float | None:
    """Mean log-probability of the echoed tokens that start in ``[start, end)``: the option and its newline."""
    offsets = getattr(logprobs, "text_offset", None) if logprobs is not None else None
    values = getattr(logprobs, "token_logprobs", None) if logprobs is not None else None
    if not offsets or not values:
        return None
    inside = [v for off, v in zip(offsets, values) if start <= off < end]
    if not inside or any(v is None for v in inside):
        return None
    return sum(inside) / len(inside)
