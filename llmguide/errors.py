"""Error types for llmguide.

Every error a user can cause (bad spec, missing file, unreachable server,
corrupt store) is raised as one of these, with a one-line message that names
the problem and the fix. The CLI prints the message without a traceback.
"""

from __future__ import annotations

__all__ = [
    "LLMGuideError",
    "ConfigError",
    "EnvNotFoundError",
    "MissingDependencyError",
    "ModelSpecError",
    "ModelFileError",
    "BackendUnavailableError",
    "CorruptStoreError",
    "StoreLockedError",
    "LLMOutputError",
]


class LLMGuideError(Exception):
    """Base class: a problem the user can fix; the message says how."""


class ConfigError(LLMGuideError, ValueError):
    """A config file or argument is invalid."""


class EnvNotFoundError(LLMGuideError, ValueError):
    """An environment id is not registered (the message lists close matches)."""


class MissingDependencyError(LLMGuideError, ImportError):
    """An optional package or system tool (e.g. Java) is not installed."""


class ModelSpecError(LLMGuideError, ValueError):
    """An LLM spec string is not understood."""


class ModelFileError(LLMGuideError, FileNotFoundError):
    """A GGUF file is missing or cannot be loaded."""


class BackendUnavailableError(LLMGuideError, ConnectionError):
    """A server (LLM endpoint, annotator) cannot be reached in time."""


class CorruptStoreError(LLMGuideError, RuntimeError):
    """A cache, database or memory directory on disk is damaged or too new."""


class StoreLockedError(LLMGuideError, RuntimeError):
    """A shared cache or database stayed locked by another process past the wait."""


class LLMOutputError(LLMGuideError, ValueError):
    """An LLM answer could not be validated even after the bounded retries."""
