"""``ChatLlamaCpp``: a LangChain chat model over an in-process ``llama_cpp.Llama``.

Why our own: the community integration is deprecated, and we need four
things it does not give together: one shared ``Llama`` per process (loading
is the slow part and llama.cpp's prefix cache lives in it), a lock (one
``Llama`` is not thread-safe), JSON-schema constrained decoding exposed
through ``response_format`` so every structured answer parses (the same
grammars back LangChain's ``with_structured_output``), and likelihood scoring
of listed options (``score_options``), so a choice is not won by position.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from llmguide.errors import ModelFileError
from llmguide.llm import _native  # noqa: F401  (OMP_WAIT_POLICY, and llama.cpp loaded before ssl: see there)
from llmguide.llm.scoring import OptionScorer

__all__ = [
    "ChatLlamaCpp",
    "chat_prompt_tokens",
    "get_llama",
    "gpu_offload_supported",
    "require_gguf",
]

_POOL: dict[tuple, tuple[Any, threading.Lock]] = {}
_POOL_LOCK = threading.Lock()
_SCORERS: dict[int, OptionScorer] = {}  # id(Llama) -> its scorer; the Llama lives in _POOL


def gpu_offload_supported() -> bool:
    """True when this llama-cpp-python build can offload layers to a GPU."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def require_gguf(model_path: str | Path) -> Path:
    """The GGUF file at ``model_path``, or ``ModelFileError`` saying how to fix the spec."""
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise ModelFileError(
            f"GGUF model file not found: {path}. Check the path in your `gguf:PATH` spec, "
            "or use the embedded model with `smollm2`."
        )
    return path


def get_llama(
    model_path: str,
    *,
    n_ctx: int = 4096,
    n_gpu_layers: int = 0,
    n_threads: int | None = None,
    seed: int = 0,
    n_batch: int = 512,
) -> tuple[Any, threading.Lock]:
    """Load (once per process and settings) a ``Llama`` and the lock that guards it."""
    path = Path(model_path).expanduser()
    key = (str(path.resolve()), n_ctx, n_gpu_layers, n_threads, seed, n_batch, os.getpid())
    with _POOL_LOCK:
        if key in _POOL:
            return _POOL[key]
        require_gguf(path)
        import llama_cpp

        try:
            llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_gpu_layers=n_gpu_layers,
                n_threads=n_threads,
                seed=seed,
                n_batch=n_batch,
                verbose=False,
            )
        except (ValueError, RuntimeError) as err:
            raise ModelFileError(
                f"llama.cpp could not load {path} ({err}). Is it a complete GGUF file? "
                "Re-download or re-convert it, or pick another with `gguf:PATH`."
            ) from err
        _POOL[key] = (llama, threading.Lock())
        return _POOL[key]


def _to_openai_messages(messages: list[BaseMessage]) -> list[dict[str, str]]:
    roles = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
    # ``.text`` joins content parts' text (images and tool blocks carry none for a text model).
    return [{"role": roles.get(m.type, "user"), "content": str(m.text)} for m in messages]


@functools.lru_cache(maxsize=8)
def _formatter(template: str, eos: str, bos: str) -> Any:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)


def chat_prompt_tokens(llama: Any, messages: list[dict[str, str]]) -> list[int]:
    """The tokens of ``messages`` rendered by the GGUF's own chat template, up to the assistant's turn.

    The same rendering ``create_chat_completion`` uses for such models, so an
    option is scored as the reply generation would give. Raises ``NotImplementedError``
    for a model without a template in its metadata (or with a custom chat handler).
    """
    template = llama.metadata.get("tokenizer.chat_template")
    if not template or llama.chat_handler is not None:
        raise NotImplementedError("this model has no chat template in its GGUF metadata")

    def text(token: int) -> str:
        return llama.detokenize([token], special=True).decode("utf-8", errors="ignore") if token >= 0 else ""

    result = _formatter(template, text(llama.token_eos()), text(llama.token_bos()))(messages=messages)
    return llama.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)


def score_reply_options(llama: Any, messages: list[dict[str, str]], options: Sequence[str]) -> tuple[list[float], int]:
    """Each option's mean log-probability per token as the whole assistant reply (its tokens, then
    end of turn) to chat ``messages`` on ``llama``, and the tokens evaluated. The caller holds the
    model's lock; `ChatLlamaCpp.score_options` and `llmguide serve`'s scoring route both call this."""
    prompt = chat_prompt_tokens(llama, messages)
    end = [llama.token_eos()]
    replies = [llama.tokenize(o.encode("utf-8"), add_bos=False, special=False) + end for o in options]
    scorer = _scorer(llama)
    # The generation context may hold this prompt already (a reply was just generated to it).
    scorer.adopt(llama.ctx, llama._input_ids[: llama.n_tokens].tolist(), prompt[:-1])
    return scorer.score(prompt, replies)


def _scorer(llama: Any) -> OptionScorer:
    """The ``OptionScorer`` of this ``Llama`` (made on first use; the caller holds its lock)."""
    key = id(llama)
    if key not in _SCORERS:
        _SCORERS[key] = OptionScorer(llama)
    return _SCORERS[key]


def _usage(prompt_tokens: int, completion_tokens: int) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=prompt_tokens,
        output_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


def _json_schema_of(schema: dict[str, Any] | type) -> dict[str, Any]:
    """The JSON schema llama.cpp compiles to a grammar, from any schema form LangChain accepts:
    a pydantic class, a JSON schema dict, an OpenAI ``{"name", "schema"}`` response format,
    an OpenAI tool/function dict or a ``TypedDict``."""
    if isinstance(schema, type) and is_basemodel_subclass(schema):
        return schema.model_json_schema()
    if isinstance(schema, dict):
        if isinstance(schema.get("schema"), dict):
            return schema["schema"]
        if "function" not in schema and "parameters" not in schema:
            return schema
    return convert_to_json_schema(schema)


class ChatLlamaCpp(BaseChatModel):
    """Chat model on a local GGUF file via llama-cpp-python.

    Constrained decoding: ``llm.with_structured_output(Model)``, or pass
    ``response_format={"type": "json_object", "schema": {...}}`` yourself
    (``llmguide.llm.structured`` does this, with validation and retries).

    >>> from llmguide.llm import load
    >>> llm = load("smollm2")                      # doctest: +SKIP
    >>> llm.invoke("Say hi").content               # doctest: +SKIP
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_path: str
    model_name: str = Field(default="", description="Short name used in cache keys and logs.")
    n_ctx: int = 4096
    n_gpu_layers: int = 0
    n_threads: int | None = None
    n_batch: int = 512
    seed: int = 0
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    _fingerprint: str = PrivateAttr(default="")

    def model_post_init(self, __context: Any) -> None:
        path = Path(self.model_path)
        if not self.model_name:
            self.model_name = path.stem
        st = path.stat() if path.exists() else None
        # Identity in cache keys: name + size + mtime, so a replaced file misses.
        self._fingerprint = f"{path.name}:{st.st_size}:{int(st.st_mtime)}" if st else path.name

    @property
    def _llm_type(self) -> str:
        return "llama-cpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "file": self._fingerprint,
            "n_ctx": self.n_ctx,
            "seed": self.seed,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
        }

    def _llama(self) -> tuple[Any, threading.Lock]:
        return get_llama(
            self.model_path,
            n_ctx=self.n_ctx,
            n_gpu_layers=self.n_gpu_layers,
            n_threads=self.n_threads,
            seed=self.seed,
            n_batch=self.n_batch,
        )

    def _call_args(self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any) -> dict:
        args: dict[str, Any] = {
            "messages": _to_openai_messages(messages),
            "temperature": kwargs.pop("temperature", self.temperature),
            "top_p": kwargs.pop("top_p", self.top_p),
            "max_tokens": kwargs.pop("max_tokens", self.max_tokens),
            "seed": kwargs.pop("seed", self.seed),
            "stop": stop,
        }
        if "response_format" in kwargs:
            args["response_format"] = kwargs.pop("response_format")
        return args

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        llama, lock = self._llama()
        with lock:
            out = llama.create_chat_completion(**self._call_args(messages, stop, **kwargs))
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        message = AIMessage(
            content=choice["message"].get("content") or "",
            usage_metadata=_usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)),
            response_metadata={"finish_reason": choice.get("finish_reason"), "model": self.model_name},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """Stream text deltas, then one empty last chunk that carries usage and finish reason.

        llama.cpp's stream reports no token counts, so they are derived here:
        a 1-token probe gives the prompt count exactly (its prompt evaluation is
        reused by the stream through llama.cpp's prefix match, so it costs about
        one token), and the context length after the stream gives the rest:
        every sampled token but the last is evaluated, and the last one is
        either the end-of-generation token ("stop", not counted, as in
        non-streamed usage) or the one that hit ``max_tokens`` ("length").
        A stop *string* ending the stream counts one token short.
        """
        args = self._call_args(messages, stop, **kwargs)
        llama, lock = self._llama()
        finish = None
        with lock:
            probe = {"messages": args["messages"], "max_tokens": 1, "temperature": 0.0, "seed": args["seed"]}
            prompt_tokens = llama.create_chat_completion(**probe)["usage"]["prompt_tokens"]
            for part in llama.create_chat_completion(stream=True, **args):
                choice = part["choices"][0]
                finish = choice.get("finish_reason") or finish
                delta = choice.get("delta", {}).get("content")
                if not delta:
                    continue
                # No on_llm_new_token here: langchain-core calls it for every chunk we yield.
                yield ChatGenerationChunk(message=AIMessageChunk(content=delta))
            completion_tokens = llama.n_tokens - prompt_tokens + int(finish == "length")
        last = AIMessageChunk(
            content="",
            usage_metadata=_usage(prompt_tokens, max(completion_tokens, 0)),
            response_metadata={"finish_reason": finish, "model": self.model_name},
            chunk_position="last",
        )
        yield ChatGenerationChunk(message=last)

    def score_options(self, messages: list[BaseMessage], options: Sequence[str]) -> tuple[list[float], int]:
        """Each option's mean log-probability per token as the whole assistant reply to ``messages``.

        The reply is the option's tokens then the end-of-turn token, so an option
        that is a prefix of another is not scored as if the reply went on.
        All options are scored in one batch on this model's ``OptionScorer``
        (see ``llmguide.llm.scoring``). Returns the scores and the tokens
        evaluated (the part of the prompt not already held from the last
        scored prompt, then each option-trie node but the leaves). Raises ``NotImplementedError`` (no chat
        template) or ``ValueError`` (does not fit in ``n_ctx``).
        """
        llama, lock = self._llama()
        with lock:
            return score_reply_options(llama, _to_openai_messages(messages), options)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        method: Literal["json_schema", "json_mode"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """A runnable that answers with ``schema`` (a pydantic instance, or a dict for other schemas).

        LangChain's contract, on llama.cpp grammars instead of tool calls:
        ``method="json_schema"`` (default) constrains decoding to the schema,
        ``"json_mode"`` to any JSON object. ``include_raw=True`` returns
        ``{"raw": AIMessage, "parsed": ..., "parsing_error": ...}`` and never
        raises on a bad answer (e.g. one cut short by ``max_tokens``).
        ``strict`` is accepted for compatibility: decoding is always constrained.
        Calls go through the response cache (the schema is part of the key)
        and the usage meter like any other call.
        """
        if kwargs:
            raise ValueError(f"Received unsupported arguments {kwargs}")
        if method == "json_schema":
            response_format = {"type": "json_object", "schema": _json_schema_of(schema)}
        elif method == "json_mode":
            response_format = {"type": "json_object"}
        else:
            raise ValueError(
                f"ChatLlamaCpp has no tool calling: use method='json_schema' (default) or 'json_mode', not {method!r}."
            )
        llm = self.bind(
            response_format=response_format,
            ls_structured_output_format={"kwargs": {"method": method}, "schema": schema},
        )
        parser: Runnable
        if isinstance(schema, type) and is_basemodel_subclass(schema):
            parser = PydanticOutputParser(pydantic_object=schema)
        else:
            parser = JsonOutputParser()
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        unparsed = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([unparsed], exception_key="parsing_error")
