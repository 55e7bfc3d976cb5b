"""OpenAI-compatible chat model whose connection failures become one clear error.

A subclass of langchain-openai's ``ChatOpenAI`` (kept, not reimplemented):
it only turns ``openai.APIConnectionError``/``APITimeoutError`` into
``BackendUnavailableError`` naming the server and the fix.
"""

from __future__ import annotations

from typing import Any

import openai
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_openai import ChatOpenAI

from llmguide.errors import BackendUnavailableError

__all__ = ["ChatOpenAICompatible"]


class ChatOpenAICompatible(ChatOpenAI):
    """``ChatOpenAI`` with readable errors for unreachable servers."""

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        try:
            return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        except (openai.APIConnectionError, openai.APITimeoutError) as err:
            url = str(self.openai_api_base or "https://api.openai.com/v1")
            raise BackendUnavailableError(
                f"LLM server {url} is unreachable ({type(err).__name__}). Is it running? "
                "Start a local one with `llmguide serve --port N`, or fix the URL in your `openai:MODEL@URL` spec."
            ) from err
