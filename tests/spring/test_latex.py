"""LaTeX context: cleaning a paper-like fixture, splitting, LLM paragraph selection."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from llmguide.agents.spring import SpringAgent
from llmguide.teachers.spring import (
    Paragraph,
    clean_latex,
    estimate_tokens,
    latex_context,
    select_paragraphs,
    split_paragraphs,
)

from llmguide.errors import ConfigError

FIXTURE = Path(__file__).parent / "fixtures" / "crafter_paper.tex"


@pytest.fixture(scope="module")
def cleaned() -> str:
    return clean_latex(FIXTURE.read_text())


def test_clean_drops_preamble_floats_bibliography_comments(cleaned: str) -> None:
    for gone in ("documentclass", "usepackage", "newcommand", "SECRETCOMMENT", "FIGURECAPTION", "FIGUREFILE",
                 "TABLECELL", "TABLECAPTION", "BIBENTRY", "guss2019", "sec:game", "references", "A. Author",
                 "\\", "{", "}", "$", "ln(1+s_i)"):
        assert gone not in cleaned, gone


def test_clean_keeps_body_expands_macros_and_marks_sections(cleaned: str) -> None:
    assert "Agents in Blocksworld must collect resources" in cleaned  # \game{} expanded
    assert "using the do action" in cleaned  # \emph unwrapped
    assert "A wood pickaxe is crafted near a table" in cleaned  # \textbf unwrapped
    assert "PPO reaches about 4.6 percent" in cleaned
    for title in ("# Introduction", "# Game Mechanics", "# Evaluation", "# Related Work"):
        assert title in cleaned
    assert cleaned.index("# Game Mechanics") < cleaned.index("# Related Work")
    assert "monsters." in cleaned  # no space left where the citation was


def test_split_paragraphs_tags_sections(cleaned: str) -> None:
    paras = split_paragraphs(cleaned)
    sections = [p.section for p in paras]
    assert sections.count("Game Mechanics") == 2
    assert paras[0].text.startswith("We introduce Blocksworld")
    mech = [p for p in paras if p.section == "Game Mechanics"]
    assert mech[1].text.startswith("Food, drink and energy decrease")
    assert mech[0].render().startswith("[Game Mechanics] The player collects wood")


def test_select_keeps_what_the_llm_calls_relevant() -> None:
    paras = [Paragraph("s", f"paragraph number {i} with words") for i in range(4)]
    llm = FakeListChatModel(responses=['{"choice": "yes"}', '{"choice": "no"}', '{"choice": "no"}', '{"choice": "yes"}'])
    kept = select_paragraphs(paras, llm, token_budget=1000)
    assert [p.text for p in kept] == ["paragraph number 0 with words", "paragraph number 3 with words"]


def test_a_model_that_keeps_nothing_gets_the_papers_opening_and_a_counted_fallback() -> None:
    from llmguide.llm import METER

    paras = [Paragraph("s", f"paragraph number {i} with words") for i in range(3)]
    METER.reset()
    kept = select_paragraphs(paras, FakeListChatModel(responses=['{"choice": "no"}']), token_budget=1000)
    assert kept == paras
    assert METER.snapshot().fallback_reasons == {"spring:no_paragraph_selected": 1}


def test_select_respects_the_token_budget() -> None:
    paras = [Paragraph("", "word " * 40), Paragraph("", "short one here ok fine"), Paragraph("", "word " * 40)]
    budget = estimate_tokens(paras[0].render()) + estimate_tokens(paras[1].render())
    kept = select_paragraphs(paras, None, token_budget=budget)
    assert kept == paras[:2]
    with pytest.raises(ConfigError, match="token_budget"):
        select_paragraphs(paras, None, token_budget=0)


def test_latex_context_from_file_and_errors(tmp_path: Path) -> None:
    text = latex_context(FIXTURE, None, token_budget=60)
    assert text.startswith("We introduce Blocksworld")
    assert estimate_tokens(text) <= 60 + 5
    with pytest.raises(ConfigError, match="not found"):
        latex_context(tmp_path / "nope.tex")
    empty = tmp_path / "empty.tex"
    empty.write_text("\\documentclass{article}\\begin{document}\\end{document}")
    with pytest.raises(ConfigError, match="No text paragraphs"):
        latex_context(empty)


@pytest.mark.slow
def test_selection_with_real_model_is_cached(fresh_cache: Path) -> None:
    from llmguide.llm import METER, load

    llm = load("smollm2", n_ctx=2048, max_tokens=16)
    METER.reset()
    first = latex_context(FIXTURE, llm, token_budget=2000)
    calls = METER.snapshot()
    assert calls.calls == len(split_paragraphs(clean_latex(FIXTURE.read_text())))
    assert first  # what the small model kept, or the paper's opening when it kept nothing (counted)
    if calls.fallback_reasons.get("spring:no_paragraph_selected"):
        assert first.startswith(split_paragraphs(clean_latex(FIXTURE.read_text()))[0].render())
    second = latex_context(FIXTURE, llm, token_budget=2000)
    assert second == first
    assert METER.snapshot().cache_hits - calls.cache_hits == calls.calls


# -- a real multi-page paper: teachers/data/crafter_notes.tex (written for llmguide; not the Crafter paper)
NOTES = Path(__file__).resolve().parents[2] / "teachers" / "data" / "crafter_notes.tex"


class KeywordJudge(FakeListChatModel):
    """Calls a paragraph relevant when it names one of ``words``; records the paragraphs it was shown."""

    words: tuple[str, ...] = ()
    shown: list = []
    responses: list = [""]

    def _call(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
        text = str(messages[0].content)
        self.shown.append(text)
        relevant = any(w in text.split("Paragraph:", 1)[-1].lower() for w in self.words)
        return '{"choice": "%s"}' % ("yes" if relevant else "no")


def test_notes_paper_cleans_to_sectioned_paragraphs_without_math_or_floats() -> None:
    source = NOTES.read_text()
    assert source.count("\\section{") >= 6 and "\\begin{equation}" in source and "\\[" in source
    cleaned = clean_latex(source)
    for gone in ("\\", "$", "h_{t+1}", "\\exp", "sum_{i=1}", "crafter_map.pdf", "A local view", "Recipes of the",
                 "toprule", "Hafner. Benchmarking", "NOT the Crafter paper", "llmguide authors", "sec:world"):
        assert gone not in cleaned, gone
    paragraphs = split_paragraphs(cleaned)
    assert len(paragraphs) >= 15 and sum(len(p.text.split()) for p in paragraphs) > 900  # several pages of text
    sections = list(dict.fromkeys(p.section for p in paragraphs if p.section))
    assert sections[:4] == ["Introduction", "The World", "Actions", "Materials"] and "Survival" in sections
    assert any("collect_wood, collect_sapling" in p.text for p in paragraphs)  # \ach{collect\_wood} unwrapped
    assert any(p.text.startswith("Crafter is a two-dimensional survival game") for p in paragraphs)  # \game expanded


def test_notes_paper_as_the_agents_context_goes_through_paragraph_selection() -> None:
    judge = KeywordJudge(words=("pickaxe", "health"), shown=[])
    agent = SpringAgent(llm=FakeListChatModel(responses=["x"]), context=str(NOTES), context_llm=judge, context_tokens=5000)
    paragraphs = split_paragraphs(clean_latex(NOTES.read_text()))
    assert len(judge.shown) == len(paragraphs)  # every paragraph was judged
    kept = agent.context.split("\n\n")
    expected = [p.render() for p in paragraphs if any(w in p.text.lower() for w in ("pickaxe", "health"))]
    assert kept == expected and 3 <= len(kept) < len(paragraphs)
    assert "[Survival]" in agent.context and "[The World]" not in agent.context
    tight = latex_context(NOTES, judge, token_budget=200)  # the budget cuts the selection
    assert estimate_tokens(tight) <= 200 and tight.split("\n\n")[0] == expected[0]
