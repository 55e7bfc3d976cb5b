"""The LLM layer: ``load(spec)`` returns a LangChain ``BaseChatModel``; ``choose`` and
``structured`` get validated answers from it; every call is cached and counted.

>>> from llmguide.llm import load, choose
>>> llm = load("smollm2")                                          # doctest: +SKIP
>>> choose(llm, "Which opens a locked door?", ["key", "ball"])     # doctest: +SKIP
'key'
"""

from llmguide.llm.cache import ResponseCache, default_cache_path
from llmguide.llm.llamacpp import ChatLlamaCpp, gpu_offload_supported
from llmguide.llm.specs import SPEC_HELP, Spec, load, parse_spec, smollm2_path
from llmguide.llm.structured import can_constrain, choice_model, choose, structured
from llmguide.llm.usage import METER, UsageMeter, UsageSnapshot

__all__ = [
    "load",
    "parse_spec",
    "Spec",
    "SPEC_HELP",
    "smollm2_path",
    "choose",
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
