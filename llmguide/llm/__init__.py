"""The LLM layer: ``load(spec)`` returns a LangChain ``BaseChatModel``; ``choose`` and
``structured`` get validated answers from it; every call is cached and counted.

``choose`` scores each option by its likelihood as the answer on llama.cpp and
OpenAI-compatible backends (``mode="score"``), so a choice is not won by the
option listed first; ``METER.snapshot().choices`` says per call site which
mode answered and how often the first listed option won.

>>> from llmguide.llm import load, choose
>>> llm = load("smollm2")                                          # doctest: +SKIP
>>> choose(llm, "Which opens a locked door?", ["key", "ball"])     # doctest: +SKIP
'key'
"""

from llmguide.llm import _native  # noqa: F401  (first: native libraries before ssl/aiohttp; see its docstring)
from llmguide.llm.cache import ResponseCache, default_cache_path
from llmguide.llm.llamacpp import ChatLlamaCpp, gpu_offload_supported
from llmguide.llm.specs import SPEC_HELP, Spec, load, parse_spec, smollm2_path
from llmguide.llm.structured import ChoiceMode, can_constrain, choice_model, choose, default_choice_mode, structured
from llmguide.llm.usage import METER, UsageMeter, UsageSnapshot

__all__ = [
    "load",
    "parse_spec",
    "Spec",
    "SPEC_HELP",
    "smollm2_path",
    "choose",
    "ChoiceMode",
    "default_choice_mode",
    "structured",
    "choice_model",
    "can_constrain",
    "ChatLlamaCpp",
    "gpu_offload_supported",
    "ResponseCache",
    "default_cache_path",
    "METER",
    "UsageMeter",
    "UsageSnapshot",
]
