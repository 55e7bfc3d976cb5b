"""SPRING's reading and reasoning parts: the game's context and the question DAG.

SPRING (2023) plays Crafter with no training: it reads the game's paper and
answers a fixed DAG of questions about the current observation, each question
seeing its parents' answers. This module builds both halves, independent of
any agent:

- Context from a LaTeX paper: ``clean_latex`` strips preamble, comments,
  figures, tables, bibliography and macros; ``split_paragraphs`` cuts the
  text into section-tagged paragraphs; ``select_paragraphs`` asks the LLM
  which ones matter for playing (cached like every LLM call) within a token
  budget; ``latex_context`` does all three from a file.
- ``crafter_manual``: the offline default context, generated from the
  ``crafter`` package's own ``data.yaml`` (actions, achievements and what
  each requires, recipes, walkable materials), so nothing is downloaded.
- ``QuestionDag`` (``load_dag``): questions declared in YAML, validated
  (duplicate ids, missing parents, cycles -> ``ConfigError`` naming the
  node), run in topological order; the nodes of one level run concurrently
  on OpenAI-compatible backends through a thread pool. Nodes with
  ``scope: context`` ask about the game alone: their answers are computed
  once per (model, context, DAG), held in memory, and put in the fixed
  system turn of every situational prompt. Prompts are prefix-stable
  (context, cached answers, observation, then one turn per answered
  ancestor, the node's question last), so llama.cpp's prefix reuse makes a
  node pay only its own question and answer.

Exports: ``Paragraph``, ``clean_latex``, ``split_paragraphs``,
``select_paragraphs``, ``latex_context``, ``crafter_manual``,
``crafter_data``, ``DagNode``, ``NodeAnswer``, ``QuestionDag``, ``load_dag``,
``DEFAULT_DAG_PATH``, ``estimate_tokens``.

Example:
    >>> dag = QuestionDag.from_dict({"nodes": [
    ...     {"id": "goal", "question": "What is the subgoal?"},
    ...     {"id": "act", "question": "Best action?", "parents": ["goal"]}]})
    >>> dag.order
    ['goal', 'act']
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import re
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from llmguide.errors import ConfigError, MissingDependencyError

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_DAG_PATH",
    "RELEVANCE_QUESTION",
    "SCOPES",
    "DagNode",
    "NodeAnswer",
    "Paragraph",
    "QuestionDag",
    "clean_latex",
    "crafter_data",
    "crafter_manual",
    "estimate_tokens",
    "latex_context",
    "load_dag",
    "select_paragraphs",
    "split_paragraphs",
]

#: The DAG shipped inside the package (SPRING's questions): package data next to this module,
#: so it is found the same way from a source checkout, an editable install or a wheel.
DEFAULT_DAG_PATH = Path(__file__).resolve().parent / "data" / "spring_dag.yaml"

RELEVANCE_QUESTION = (
    "Is this paragraph useful for an agent that must play the game well "
    "(rules, objects, actions, achievements, requirements, survival)?"
)


def estimate_tokens(text: str) -> int:
    """Rough token count (~4 characters a token); enough to respect a budget."""
    return max(1, (len(text) + 3) // 4)


# --------------------------------------------------------------------------- LaTeX

#: environments dropped whole: floats, bibliography, code listings, appendix-like matter
_DROP_ENVS = (
    "figure", "figure*", "table", "table*", "tabular", "tabular*", "thebibliography",
    "wrapfigure", "algorithm", "algorithm*", "lstlisting", "verbatim", "tikzpicture",
)
_DEFINITIONS = re.compile(
    r"\\(?:re)?newcommand\*?\s*\{?\\(?P<name>[A-Za-z]+)\}?\s*(?:\[(?P<nargs>\d)\])?\s*(?:\[[^\]]*\])?\s*\{"
)
_DROP_WITH_ARG = (
    "cite", "citep", "citet", "citealp", "ref", "eqref", "autoref", "cref", "Cref", "label",
    "bibliography", "bibliographystyle", "includegraphics", "footnote", "url", "input", "include",
    "vspace", "hspace", "thanks",
)
_SECTION = re.compile(r"\\(?:sub)*section\*?\s*\{")
_HEADING = "\x00H"  # paragraph break + section marker, resolved by split_paragraphs


def _matching_brace(text: str, open_at: int) -> int:
    """Index of the brace closing the one at ``open_at`` (or len(text) if unbalanced)."""
    depth = 0
    i = open_at
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return len(text)


def _strip_comments(text: str) -> str:
    return re.sub(r"(?<!\\)%.*", "", text)


def _user_macros(text: str) -> tuple[dict[str, str], str]:
    """Collect argument-free ``\\newcommand`` bodies and remove every definition from the text."""
    macros: dict[str, str] = {}
    out, pos = [], 0
    for match in _DEFINITIONS.finditer(text):
        if match.start() < pos:
            continue
        end = _matching_brace(text, match.end() - 1)
        if not match.group("nargs"):
            macros[match.group("name")] = text[match.end(): end]
        out.append(text[pos: match.start()])
        pos = end + 1
    out.append(text[pos:])
    return macros, "".join(out)


def _expand_macros(text: str, macros: Mapping[str, str]) -> str:
    for _ in range(3):  # macros may use macros; a few rounds suffice for papers
        for name, body in macros.items():
            text = re.sub(rf"\\{name}(?![A-Za-z])(\{{\}})?\s?", lambda _m, b=body: b + " ", text)
    return text


def _drop_command_with_arg(text: str, name: str) -> str:
    pattern = re.compile(rf"\\{name}\*?\s*(\[[^\]]*\]\s*)*\{{")
    while (m := pattern.search(text)) is not None:
        end = _matching_brace(text, m.end() - 1)
        text = text[: m.start()] + text[end + 1:]
    return text


def _mark_sections(text: str) -> str:
    while (m := _SECTION.search(text)) is not None:
        end = _matching_brace(text, m.end() - 1)
        title = text[m.end(): end].strip()
        text = f"{text[: m.start()]}\n\n{_HEADING}{title}\n\n{text[end + 1:]}"
    return text


def clean_latex(source: str) -> str:
    """LaTeX source -> plain text of the body, paragraphs kept, section titles marked.

    Drops comments, the preamble (everything before ``\\begin{document}``),
    floats (figures, tables), the bibliography, math displays, and macro
    definitions; expands argument-free user macros (``\\newcommand{\\game}{Crafter}``);
    unwraps formatting commands (``\\textbf{x}`` -> ``x``); removes citations,
    references and labels. Section headings become lines ``# Title``.
    """
    text = _strip_comments(source)
    macros, text = _user_macros(text)
    begin = re.search(r"\\begin\{document\}", text)
    if begin:
        text = text[begin.end():]
    end = re.search(r"\\end\{document\}", text)
    if end:
        text = text[: end.start()]
    for env in _DROP_ENVS:
        e = re.escape(env)
        text = re.sub(rf"\\begin\{{{e}\}}.*?\\end\{{{e}\}}", "\n\n", text, flags=re.DOTALL)
    text = re.sub(r"\\begin\{(equation|align|gather|multline)\*?\}.*?\\end\{\1\*?\}", " ", text, flags=re.DOTALL)
    text = re.sub(r"\\\[.*?\\\]", " ", text, flags=re.DOTALL)
    text = _expand_macros(text, macros)
    text = re.sub(r"\\(maketitle|appendix|tableofcontents|newpage|clearpage|noindent|centering|item)\b", "\n", text)
    text = re.sub(r"\\(begin|end)\{(abstract)\}", "\n\n", text)
    text = re.sub(r"\\(title|author|date)\s*\{", r"\\drop{", text)
    for name in ("drop", *_DROP_WITH_ARG):
        text = _drop_command_with_arg(text, name)
    text = _mark_sections(text)
    text = re.sub(r"\\(begin|end)\{[^}]*\}", "\n", text)  # any remaining list/center envs
    # Unwrap formatting commands: \textbf{x}, \emph{x}, \texttt{x} ... keep their argument.
    for _ in range(4):
        text = re.sub(r"\\[A-Za-z]+\*?\s*(?:\[[^\]]*\])?\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"\$([^$]*)\$", r"\1", text)  # inline math: keep its symbols
    text = re.sub(r"\\([%&#_$])", r"\1", text)
    text = re.sub(r"\\[A-Za-z]+\*?", " ", text)  # argument-free commands left over
    text = re.sub(r"~", " ", text)
    text = text.replace("{", "").replace("}", "").replace("``", '"').replace("''", '"')
    text = text.replace(_HEADING, "# ")
    lines = [re.sub(r"\s+([,.;:])", r"\1", re.sub(r"[ \t]+", " ", ln)).strip() for ln in text.splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


@dataclass(frozen=True)
class Paragraph:
    """One paragraph of the cleaned paper and the section it sits in."""

    section: str
    text: str

    def render(self) -> str:
        return f"[{self.section}] {self.text}" if self.section else self.text


def split_paragraphs(clean_text: str, min_words: int = 5) -> list[Paragraph]:
    """Blank-line separated paragraphs of ``clean_latex`` output, each tagged with its section."""
    section, out = "", []
    for block in re.split(r"\n\s*\n", clean_text):
        block = " ".join(block.split())
        if not block:
            continue
        if block.startswith("# "):
            section = block[2:].strip()
            continue
        if len(block.split()) >= min_words:
            out.append(Paragraph(section, block))
    return out


def select_paragraphs(
    paragraphs: Sequence[Paragraph],
    llm: str | BaseChatModel | None = None,
    *,
    token_budget: int = 1500,
    question: str = RELEVANCE_QUESTION,
) -> list[Paragraph]:
    """Keep the paragraphs the LLM calls relevant to playing, in order, within ``token_budget``.

    SPRING asks the LLM which paragraphs of the paper matter; so do we, one
    constrained yes/no per paragraph (answers come from the persistent
    response cache on a second run). With ``llm=None`` every paragraph is
    kept, in order, until the budget is spent.
    """
    if token_budget <= 0:
        raise ConfigError(f"token_budget must be positive, got {token_budget}; try 1500.")
    model = None
    if llm is not None:
        from llmguide.llm import choose, load

        model = load(llm)
    kept: list[Paragraph] = []
    used = 0
    for para in paragraphs:
        cost = estimate_tokens(para.render())
        if used + cost > token_budget:
            continue
        if model is not None:
            prompt = f"Section: {para.section or 'none'}\nParagraph: {para.text}\n\n{question}"
            if choose(model, prompt, ["yes", "no"], default="yes") != "yes":
                continue
        kept.append(para)
        used += cost
    if model is not None and not kept:
        # A weak model can turn every paragraph down; an agent with no context at all
        # is worse than one with the paper's opening, so keep it and count the fallback.
        from llmguide.llm import METER

        METER.count_fallback("spring:no_paragraph_selected")
        log.warning("The LLM called no paragraph relevant; keeping the paper's first paragraphs within the budget.")
        return select_paragraphs(paragraphs, None, token_budget=token_budget)
    return kept


def latex_context(
    path: str | Path,
    llm: str | BaseChatModel | None = None,
    *,
    token_budget: int = 1500,
) -> str:
    """A context string from a LaTeX file: cleaned, split, LLM-selected, within budget."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"LaTeX context file not found: {path}. Point `context:` at a .tex file, or use `context: manual`."
        )
    paragraphs = split_paragraphs(clean_latex(path.read_text(errors="replace")))
    if not paragraphs:
        raise ConfigError(f"No text paragraphs found in {path} after cleaning; is it a LaTeX paper body?")
    kept = select_paragraphs(paragraphs, llm, token_budget=token_budget)
    return "\n\n".join(p.render() for p in kept)


# --------------------------------------------------------------------------- Crafter manual


def crafter_data() -> dict[str, Any]:
    """The ``crafter`` package's own ``data.yaml`` (read without importing crafter's renderer)."""
    spec = importlib.util.find_spec("crafter")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("The Crafter manual needs the 'crafter' package; install it with `pip install crafter`.")
    path = Path(next(iter(spec.submodule_search_locations))) / "data.yaml"
    return yaml.safe_load(path.read_text())


def _source_of(collect: Mapping[str, Any], item: str) -> str | None:
    """The material whose collection gives ``item`` (tree -> wood, water -> drink)."""
    return next((m for m, c in collect.items() if item in c.get("receive", {})), None)


def _amounts(d: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in d.items())


#: Rules that live in crafter's code (objects.py), not in data.yaml; stated as the paper states them.
_CREATURE_RULES = {
    "eat_cow": "face a cow and do (hit it a few times); restores food.",
    "eat_plant": "place a sapling, wait until it has grown, then face it and do; restores food.",
    "defeat_zombie": "face a zombie (on grass, more at night) and do until it dies; a sword helps.",
    "defeat_skeleton": "face a skeleton (in dark tunnels/caves) and do until it dies; a sword helps.",
    "wake_up": "sleep when energy is low; you wake up when energy is restored.",
}


def crafter_manual(data: Mapping[str, Any] | None = None) -> str:
    """A concise game manual generated from Crafter's ``data.yaml``.

    Lists the actions, the survival stats, and for each of the 22
    achievements what it requires (tools, materials, nearby stations), from
    the ``collect``, ``place`` and ``make`` tables; the few rules that live
    in Crafter's code (cows, zombies, skeletons, sleeping) come from a short
    fixed table.
    """
    data = dict(data or crafter_data())
    collect, place, make = data["collect"], data["place"], data["make"]
    lines = [
        "CRAFTER GAME MANUAL",
        "You are the player in a 2D world seen from above. The episode ends when health reaches 0.",
        "Actions: " + ", ".join(data["actions"]) + ".",
        "move_* walks one cell (only onto " + ", ".join(data["walkable"]) + "); you then face that way. "
        "do = interact with the cell you face (collect material, attack, eat). noop = wait.",
        "Stats " + ", ".join(k for k in ("health", "food", "drink", "energy")) + " go from 0 to 9; "
        "food, drink and energy drop over time and health falls when any of them is 0.",
        "Achievements (each unlocked once gives +1 reward) and what they need:",
    ]
    for name in data["achievements"]:
        verb, _, obj = name.partition("_")
        if name in _CREATURE_RULES:
            rule = _CREATURE_RULES[name]
        elif verb == "collect" and (source := _source_of(collect, obj)) is not None:
            c = collect[source]
            need = f"needs {_amounts(c['require'])} in inventory; " if c["require"] else ""
            chance = f" ({int(c['probability'] * 100)}% chance per try)" if "probability" in c else ""
            rule = f"face {source} and do{chance}; {need}gives {_amounts(c['receive'])}."
        elif verb == "place" and obj in place:
            p = place[obj]
            rule = f"uses {_amounts(p['uses'])}; the cell you face must be {'/'.join(p['where'])}."
        elif verb == "make" and obj in make:
            m = make[obj]
            rule = f"uses {_amounts(m['uses'])}; stand near {' and '.join(m['nearby'])}."
        else:
            rule = "see the game rules."
        lines.append(f"- {name}: {rule}")
    lines.append(
        "Tool chain: wood -> table -> wood_pickaxe -> stone -> stone_pickaxe -> "
        "(coal, furnace) -> iron -> iron_pickaxe -> diamond."
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- question DAG


#: ``context``: about the game, answered from the context alone once per game;
#: ``situation``: about the current observation, asked every step.
SCOPES = ("context", "situation")
#: The one instruction every prompt's system turn carries (once: it is part of the fixed prefix).
ANSWER_STYLE = "Answer each question in one short sentence."
#: Generation stops at these: small models go on with a question of their own.
STOP = ("\n", "Q:")


@dataclass(frozen=True)
class DagNode:
    """One question; its ancestors are answered first and shown in its prompt."""

    id: str
    question: str
    parents: tuple[str, ...] = ()
    max_tokens: int | None = None
    scope: str = "situation"


@dataclass(frozen=True)
class NodeAnswer:
    """What one node was asked and answered at one step (the agent logs these)."""

    id: str
    question: str
    answer: str
    parents: tuple[str, ...] = ()


@dataclass
class QuestionDag:
    """A validated DAG of questions, run in topological order.

    ``final`` names the node whose answer the agent turns into an action (by
    default the one node no other node depends on). ``levels`` groups nodes
    whose parents are all in earlier levels: those may run concurrently.
    ``fast`` names the situational nodes asked in fast mode (default: ``final``).
    """

    nodes: dict[str, DagNode]
    final: str
    max_tokens: int = 64
    answer_chars: int = 400
    fast: tuple[str, ...] = ()
    order: list[str] = field(init=False)
    levels: list[list[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.levels = _levels(self.nodes)
        self.order = [n for level in self.levels for n in level]
        if self.final not in self.nodes:
            raise ConfigError(
                f"DAG final node {self.final!r} is not one of the nodes ({', '.join(self.nodes)}); fix `final:`."
            )
        for node in self.nodes.values():
            if node.scope not in SCOPES:
                raise ConfigError(f"DAG node {node.id!r} has scope {node.scope!r}; use one of {', '.join(SCOPES)}.")
            if node.scope == "context":
                bad = [p for p in node.parents if self.nodes[p].scope != "context"]
                if bad:
                    raise ConfigError(
                        f"Context node {node.id!r} depends on situational node(s) {', '.join(bad)}; a context "
                        "answer is computed once per game, so its parents must be context nodes too."
                    )
        if self.nodes[self.final].scope == "context":
            raise ConfigError(f"DAG final node {self.final!r} is a context node; the action needs a situational node.")
        self.fast = tuple(self.fast) or (self.final,)
        for n in self.fast:
            if n not in self.nodes or self.nodes[n].scope == "context":
                raise ConfigError(
                    f"`fast:` lists {n!r}, which is not a situational node of the DAG "
                    f"({', '.join(self.situation_nodes)}); fix the name."
                )

    @property
    def context_nodes(self) -> list[str]:
        """Nodes answered from the context alone (once per game), in topological order."""
        return [n for n in self.order if self.nodes[n].scope == "context"]

    @property
    def situation_nodes(self) -> list[str]:
        """Nodes asked every step, in topological order."""
        return [n for n in self.order if self.nodes[n].scope != "context"]

    def signature(self) -> str:
        """A digest of the questions, edges and caps: the key of cached context answers."""
        raw = [(n.id, n.question, n.parents, n.max_tokens, n.scope) for n in self.nodes.values()]
        return hashlib.sha256(json.dumps([raw, self.max_tokens, self.answer_chars]).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuestionDag:
        """Build from ``{"nodes": [{id, question, parents?, max_tokens?}, ...], "final"?, "max_tokens"?}``."""
        if not isinstance(data, Mapping) or not isinstance(data.get("nodes"), list) or not data["nodes"]:
            raise ConfigError("A question DAG needs a non-empty `nodes:` list of {id, question, parents}.")
        nodes: dict[str, DagNode] = {}
        for i, raw in enumerate(data["nodes"]):
            if not isinstance(raw, Mapping) or not raw.get("id") or not raw.get("question"):
                raise ConfigError(f"DAG node #{i + 1} needs both `id:` and `question:` (got {raw!r}).")
            node_id = str(raw["id"])
            if node_id in nodes:
                raise ConfigError(f"DAG node {node_id!r} is declared twice; node ids must be unique.")
            parents = raw.get("parents") or []
            if isinstance(parents, str):
                parents = [parents]
            max_tokens = raw.get("max_tokens")
            nodes[node_id] = DagNode(
                node_id, str(raw["question"]).strip(), tuple(str(p) for p in parents),
                int(max_tokens) if max_tokens is not None else None, str(raw.get("scope") or "situation"),
            )
        for node in nodes.values():
            for parent in node.parents:
                if parent not in nodes:
                    raise ConfigError(
                        f"DAG node {node.id!r} lists parent {parent!r}, which is not a node; "
                        f"declare it or fix the name (nodes: {', '.join(nodes)})."
                    )
        final = data.get("final")
        if final is None:
            used = {p for n in nodes.values() for p in n.parents}
            sinks = [n for n in nodes if n not in used and nodes[n].scope != "context"]
            if len(sinks) != 1:
                raise ConfigError(
                    f"The DAG has {len(sinks)} final nodes ({', '.join(sinks) or 'none'}); "
                    "name the one that gives the action with `final:`."
                )
            final = sinks[0]
        fast = data.get("fast") or ()
        if isinstance(fast, str):
            fast = [fast]
        return cls(
            nodes=nodes,
            final=str(final),
            max_tokens=int(data.get("max_tokens", 64)),
            answer_chars=int(data.get("answer_chars", 400)),
            fast=tuple(str(n) for n in fast),
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> QuestionDag:
        path = Path(path).expanduser()
        if not path.is_file():
            raise ConfigError(f"DAG file not found: {path}. Use {DEFAULT_DAG_PATH} as a template.")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"DAG file {path} is not valid YAML ({err}).") from err
        return cls.from_dict(data or {})

    def ancestors(self, node_id: str) -> list[str]:
        """All nodes ``node_id`` depends on, in topological order."""
        seen: set[str] = set()
        stack = list(self.nodes[node_id].parents)
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(self.nodes[n].parents)
        return [n for n in self.order if n in seen]

    # -- execution ------------------------------------------------------
    def system_text(self, context: str, answers: Mapping[str, NodeAnswer]) -> str:
        """The fixed system turn of situational prompts: the context, then the per-game context answers."""
        known = [f"Q: {answers[n].question}\nA: {answers[n].answer}" for n in self.context_nodes if n in answers]
        parts = [context.strip()]
        if known:
            parts.append("What you know about the game:\n" + "\n".join(known))
        if self.context_nodes:
            parts.append(ANSWER_STYLE)
        return "\n\n".join(parts)

    def prompt(self, node: DagNode, context: str, observation: str, answers: Mapping[str, NodeAnswer]) -> list[BaseMessage]:
        """Messages for one node, prefix-stable for llama.cpp's prefix reuse.

        System turn: the context (and, for a situational node, the cached
        answers of the context nodes). Then the observation (situational
        nodes only) with the first answered ancestor's question, one
        assistant/user turn per answered ancestor in topological order, and
        the node's own question last. In a chain-shaped DAG each prompt is the
        previous prompt plus its answer plus one question, so the model
        evaluates only that much.
        """
        situational = node.scope != "context"
        chain = [a for a in self.ancestors(node.id) if a in answers and (self.nodes[a].scope != "context") == situational]
        if situational:
            system = self.system_text(context, answers)
        else:
            system = context.strip() + ("\n\n" + ANSWER_STYLE if self.context_nodes else "")
        messages: list[BaseMessage] = [SystemMessage(content=system)]
        lead = observation.strip() + "\n\n" if situational else ""
        for a in chain:
            messages.append(HumanMessage(content=f"{lead}Q: {answers[a].question}"))
            messages.append(AIMessage(content=answers[a].answer))
            lead = ""
        messages.append(HumanMessage(content=f"{lead}Q: {node.question}"))
        return messages

    def ask(self, llm: BaseChatModel, node: DagNode, context: str, observation: str, answers: Mapping[str, NodeAnswer]) -> NodeAnswer:
        messages = self.prompt(node, context, observation, answers)
        # One short sentence: a new line or a made-up next question ends the answer (tokens are the cost).
        reply = llm.invoke(messages, max_tokens=node.max_tokens or self.max_tokens, stop=list(STOP))
        text = reply.content if isinstance(reply.content, str) else str(reply.content)
        text = " ".join(text.split())[: self.answer_chars] or "(no answer)"
        return NodeAnswer(node.id, node.question, text, node.parents)

    def context_answers(self, llm: BaseChatModel, context: str) -> dict[str, NodeAnswer]:
        """The context nodes' answers, computed once per (model, context, DAG) and held in memory.

        They depend on the context alone, so a game asks them once; across
        processes the LLM response cache returns the same answers without
        evaluating them again.
        """
        if not self.context_nodes:
            return {}
        key = (hashlib.sha256(context.encode()).hexdigest(), self.signature())
        with _CONTEXT_LOCK:
            held = _CONTEXT_ANSWERS.get(id(llm))
            if held is not None and held[0]() is llm and key in held[1]:
                return dict(held[1][key])
        answers: dict[str, NodeAnswer] = {}
        for n in self.context_nodes:
            answers[n] = self.ask(llm, self.nodes[n], context, "", answers)
        with _CONTEXT_LOCK:
            held = _CONTEXT_ANSWERS.get(id(llm))
            if held is None or held[0]() is not llm:
                held = (weakref.ref(llm), {})
                _CONTEXT_ANSWERS[id(llm)] = held
            held[1][key] = dict(answers)
        return answers

    def run(
        self,
        llm: BaseChatModel,
        context: str,
        observation: str,
        *,
        nodes: Sequence[str] | None = None,
        concurrent: bool | None = None,
        max_workers: int = 4,
    ) -> dict[str, NodeAnswer]:
        """Answer the context nodes (cached per game) and then the situational ``nodes``
        (default all) in topological order; returns answers keyed by node id (in order).

        ``concurrent=None`` runs the nodes of one level in a thread pool only
        on an OpenAI-compatible backend (a server batches them); the
        in-process llama.cpp model is serialised by its lock anyway, and
        there the prefix-stable chain is what saves the time.
        """
        if concurrent is None:
            from llmguide.llm.openai_compat import ChatOpenAICompatible

            concurrent = isinstance(llm, ChatOpenAICompatible)
        wanted = set(self.situation_nodes if nodes is None else nodes)
        unknown = wanted - set(self.situation_nodes)
        if unknown:
            raise ConfigError(f"Not situational nodes of this DAG: {', '.join(sorted(unknown))}.")
        answers: dict[str, NodeAnswer] = dict(self.context_answers(llm, context))
        pool = ThreadPoolExecutor(max_workers=max_workers) if concurrent else None
        try:
            for level in self.levels:
                level_nodes = [self.nodes[n] for n in level if n in wanted]
                if pool is not None and len(level_nodes) > 1:
                    futures = [pool.submit(self.ask, llm, n, context, observation, dict(answers)) for n in level_nodes]
                    results = [f.result() for f in futures]
                else:
                    results = [self.ask(llm, n, context, observation, answers) for n in level_nodes]
                for r in results:
                    answers[r.id] = r
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        return {n: answers[n] for n in self.order if n in answers}


#: id(model) -> (weak reference to it, {(context digest, DAG signature): context answers})
_CONTEXT_ANSWERS: dict[int, tuple[Any, dict[tuple[str, str], dict[str, NodeAnswer]]]] = {}
_CONTEXT_LOCK = threading.Lock()


def _levels(nodes: Mapping[str, DagNode]) -> list[list[str]]:
    """Kahn's algorithm by levels (declaration order inside a level); a cycle is a ConfigError."""
    remaining = {n: set(node.parents) for n, node in nodes.items()}
    done: set[str] = set()
    levels: list[list[str]] = []
    while remaining:
        ready = [n for n, parents in remaining.items() if parents <= done]
        if not ready:
            cycle = _find_cycle({n: nodes[n].parents for n in remaining})
            raise ConfigError(
                f"The question DAG has a cycle: {' -> '.join(cycle)}; "
                f"node {cycle[0]!r} depends on itself through its parents. Remove one edge."
            )
        levels.append(ready)
        done.update(ready)
        for n in ready:
            del remaining[n]
    return levels


def _find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """One cycle in ``graph`` (node -> parents) as a closed path [a, b, ..., a]."""
    for start in graph:
        path, seen = [start], {start}
        node = start
        while True:
            nxt = next((p for p in graph[node] if p in graph), None)
            if nxt is None:
                break
            if nxt in seen:
                i = path.index(nxt)
                return path[i:] + [nxt]
            path.append(nxt)
            seen.add(nxt)
            node = nxt
    return list(graph)[:1] * 2


def load_dag(dag: str | Path | Mapping[str, Any] | QuestionDag | None = None) -> QuestionDag:
    """A ``QuestionDag`` from a path, a dict, an instance, or None (the default SPRING DAG)."""
    if isinstance(dag, QuestionDag):
        return dag
    if dag is None:
        return QuestionDag.from_yaml(DEFAULT_DAG_PATH)
    if isinstance(dag, Mapping):
        return QuestionDag.from_dict(dag)
    return QuestionDag.from_yaml(dag)
