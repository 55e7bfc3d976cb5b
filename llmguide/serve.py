"""``llmguide serve``: llama-cpp-python's OpenAI-compatible server, made tolerant.

We run llama-cpp-python's own server app (not a reimplementation) and put one
small ASGI middleware in front of it that normalises two things real clients
send and that server rejects or ignores:

* message ``content`` given as a list of text parts (the official ``openai``
  client and LangChain do this) -> one string;
* ``response_format: {"type": "json_schema", "json_schema": {"schema": S}}``
  (OpenAI structured outputs, what ``openai:`` specs send) -> the server's
  ``{"type": "json_object", "schema": S}``, which it compiles to a grammar.

It also adds one route, ``POST /v1/llmguide/score`` (``{"messages": [...],
"options": [...]}`` -> ``{"scores": [...], "evaluated_tokens": N}``), so a
choice asked through the server is scored as in-process llama.cpp scores it
(the GGUF's chat template, one shared prompt evaluation, the same
`OptionScorer`) instead of being generated: the server's completions endpoint
takes one prompt per request, and its echoed log-probabilities are shifted by
one token for models that add no BOS token (SmolLM2's), so they cannot be used.

Concurrency: the pinned llama-cpp-python server (0.3.x) decodes one request
at a time per model; concurrent clients (many learners sharing one server)
queue behind its lock and are all answered, in turn. It has no parallel
slots, so throughput does not grow with clients: on a GPU host serve a larger
model with vLLM (continuous batching) and point llmguide at it with
``openai:MODEL@URL`` (README: "One LLM server for many learners").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Awaitable, Callable

from pydantic import BaseModel, Field

from llmguide.errors import ModelFileError

# Moved to llmguide.net; still importable from here only because tests/llm/test_serve.py imports them so.

__all__ = ["normalize_chat_request", "OpenAICompatMiddleware", "create_server_app", "run_server", "resolve_model_path"]

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def _flatten(content: Any) -> Any:
    if isinstance(content, list):
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return content


def normalize_chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """Return a chat-completion request the llama-cpp-python server accepts."""
    messages = body.get("messages")
    if isinstance(messages, list):
        body["messages"] = [
            dict(m, content=_flatten(m.get("content"))) if isinstance(m, dict) else m for m in messages
        ]
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        body["response_format"] = {"type": "json_object", **({"schema": schema} if schema else {})}
    if "max_completion_tokens" in body and "max_tokens" not in body:  # newer OpenAI clients; the server reads max_tokens
        body["max_tokens"] = body.pop("max_completion_tokens")
    return body


class OpenAICompatMiddleware:
    """Pure-ASGI middleware that rewrites chat-completion request bodies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope["path"].endswith("/chat/completions"):
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            body = json.dumps(normalize_chat_request(json.loads(body))).encode()
        except (ValueError, AttributeError):
            pass  # malformed JSON: let the server answer with its own 4xx
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.app(dict(scope, headers=headers), replay, send)


def resolve_model_path(model: str) -> Path:
    """``smollm2``, ``gguf:PATH`` or a plain path -> an existing GGUF file."""
    from llmguide.llm import parse_spec

    spec = parse_spec(model if model == "smollm2" or ":" in model else f"gguf:{model}")
    path = Path(spec.model).expanduser()
    if spec.kind != "gguf" or not path.is_file():
        raise ModelFileError(f"Cannot serve {model!r}: no GGUF file at {path}. Pass `smollm2` or a .gguf path.")
    return path


def create_server_app(
    model: str = "smollm2",
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    n_gpu_layers: int = 0,
    n_ctx: int = 4096,
    model_alias: str | None = None,
) -> Any:
    """Build the ASGI app: llama-cpp-python's server wrapped in our middleware."""
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    path = resolve_model_path(model)
    alias = model_alias or ("smollm2" if model == "smollm2" else path.stem)
    app = create_app(
        server_settings=ServerSettings(host=host, port=port),
        model_settings=[
            ModelSettings(model=str(path), model_alias=alias, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx, verbose=False)
        ],
    )
    app.add_middleware(OpenAICompatMiddleware)
    _add_scoring_route(app)
    return app


class ScoreRequest(BaseModel):
    """Body of ``POST /v1/llmguide/score``: chat messages and the options to score as the reply."""

    model: str | None = None
    messages: list[dict[str, str]] = Field(min_length=1)
    options: list[str] = Field(min_length=1)


def _add_scoring_route(app: Any) -> None:
    """``POST /v1/llmguide/score``: options scored on the served model, under the server's own lock."""
    from fastapi import Depends, HTTPException
    from llama_cpp.server.app import get_llama_proxy

    from llmguide.llm.llamacpp import score_reply_options

    def score(body: ScoreRequest, llama_proxy: Any = Depends(get_llama_proxy)) -> dict[str, Any]:
        llama = llama_proxy(body.model)
        try:
            scores, evaluated = score_reply_options(llama, body.messages, body.options)
        except (NotImplementedError, ValueError) as err:  # no chat template / does not fit in n_ctx
            raise HTTPException(status_code=400, detail=str(err)) from err
        return {"model": body.model, "scores": scores, "evaluated_tokens": evaluated}

    app.post("/v1/llmguide/score")(score)


def run_server(model: str = "smollm2", *, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
    """Serve until interrupted. Clients: ``openai:ALIAS@http://HOST:PORT/v1``.

    ``options``: ``n_gpu_layers``, ``n_ctx``, ``model_alias`` as in ``create_server_app``.
    """
    import uvicorn

    app = create_server_app(model, host=host, port=port, **options)
    print(f"llmguide serve: {model} on http://{host}:{port}/v1 (n_gpu_layers={options.get('n_gpu_layers', 0)})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
