"""Build notebooks/03_spring_crafter.ipynb (no outputs): `python notebooks/build_03_spring_crafter.py`."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    new_markdown_cell(
        "# SPRING on Crafter: read the game, reason over a question DAG, act\n\n"
        "SPRING plays Crafter with no training. Its context is the game's own description (a paper's "
        "LaTeX source, or offline: the manual built from the `crafter` package's own `data.yaml`). The "
        "default question DAG follows the paper's shape: questions about the game (achievements, tools, "
        "dangers, actions) answered once from the context and held, then questions about the situation "
        "every step (what is seen, the last action's outcome, the priority, its requirements, the next "
        "action), each seeing its ancestors' answers. The last answer becomes one of the 17 actions by "
        "likelihood-scored choice, so an invalid action cannot happen and the first listed action has no "
        "advantage.\n\n"
        "Budgets here are tiny (a 2-question DAG, 16-token answers, 3 steps) so the notebook runs in about "
        "a minute on a CPU with the embedded 135M model. `configs/spring_crafter.yaml` runs the full "
        "default DAG (packaged with `llmguide.teachers`); point `llm:` at a larger model to make it play better."
    ),
    new_code_cell(
        "import os\n"
        "os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')  # llama.cpp threads sleep instead of spinning on a shared CPU\n"
        "import json, tempfile\n"
        "from pathlib import Path\n"
        "import llmguide\n"
        "from llmguide.teachers.spring import (clean_latex, crafter_manual, load_dag, select_paragraphs,\n"
        "                                      split_paragraphs)\n"
        "ROOT = Path(llmguide.__file__).resolve().parents[1]  # the repository (the LaTeX fixture is in tests/)\n"
        "manual = crafter_manual()\n"
        "print('\\n'.join(manual.splitlines()[:12]), '\\n...')"
    ),
    new_markdown_cell(
        "## Context from a paper's LaTeX source\n"
        "`clean_latex` drops the preamble, comments, figures, tables, maths displays, citations and the "
        "bibliography, and expands simple macros. Here on a small made-up paper used by the tests; "
        "`select_paragraphs(paragraphs, llm)` asks the LLM which paragraphs matter for playing (one cached "
        "yes/no per paragraph) and keeps them within a token budget."
    ),
    new_code_cell(
        "tex = (ROOT / 'tests' / 'spring' / 'fixtures' / 'crafter_paper.tex').read_text()\n"
        "paragraphs = split_paragraphs(clean_latex(tex))\n"
        "for p in paragraphs:\n"
        "    print('-', p.render()[:100])\n"
        "print(len(select_paragraphs(paragraphs, None, token_budget=80)), 'paragraphs fit in 80 tokens')"
    ),
    new_markdown_cell(
        "## The question DAG\nDeclared in YAML, validated (missing parents and cycles are errors naming the "
        "node), run level by level; the nodes of one level run concurrently on an OpenAI-compatible server."
    ),
    new_code_cell(
        "dag = load_dag()   # the packaged default: SPRING's questions\n"
        "for level in dag.levels:\n"
        "    for node in level:\n"
        "        print(f'{node:13s} parents={list(dag.nodes[node].parents)}: {dag.nodes[node].question[:70]}')\n"
        "print('final node:', dag.final)"
    ),
    new_markdown_cell(
        "## Three steps with the embedded model\n"
        "A 2-question DAG with short answers keeps this quick. SPRING runs as the `spring` method on the "
        "core, the same path as `llmguide run configs/spring_crafter.yaml`, so it gets the same run record "
        "(`metrics.json`) as every method: score = the Crafter score, success = any achievement unlocked. "
        "Every node's question and answer goes to a JSONL log per episode in the run dir."
    ),
    new_code_cell(
        "from llmguide.core import prepare, run\n\n"
        "small_dag = {'max_tokens': 16, 'nodes': [\n"
        "    {'id': 'subgoal', 'question': 'What is the top-priority subgoal now?'},\n"
        "    {'id': 'action', 'question': 'What is the best action for it?', 'parents': ['subgoal']}]}\n"
        "run_dir = Path(tempfile.mkdtemp(prefix='spring-'))\n"
        "metrics = run(prepare({'method': 'spring', 'llm': 'smollm2', 'n_ctx': 2048, 'dag': small_dag,\n"
        "                       'episodes': 1, 'max_steps': 3}), run_dir)\n"
        "{k: getattr(metrics, k) for k in ('score', 'return_mean', 'llm_calls_per_1k_steps', 'invalid_actions')}"
    ),
    new_code_cell(
        "for line in (run_dir / 'logs' / 'episode_000.jsonl').read_text().splitlines()[:2]:\n"
        "    row = json.loads(line)\n"
        "    print(f\"step {row['step']}: {row['observation'][:160]}...\")\n"
        "    for node in row['nodes']:\n"
        "        print(f\"  Q[{node['id']}] {node['question']}\\n  A: {node['answer']}\")\n"
        "    print('  -> action:', row['action'])"
    ),
    new_markdown_cell(
        "## The Crafter score\nThe paper's score is a geometric mean over the 22 achievements' success "
        "rates (in percent, shifted by one): unlocking many achievements sometimes beats one always."
    ),
    new_code_cell(
        "from llmguide.metrics import crafter_score\n"
        "print(round(crafter_score({'collect_wood': 1.0}), 2), round(crafter_score({'collect_wood': .5, 'collect_sapling': .5}), 2))"
    ),
    new_markdown_cell(
        "Measured figures (random, PPO, SPRING with the small model) are in `benchmarks/RESULTS.md`; "
        "reproduce them with `python benchmarks/spring_crafter.py`, and add `--large-llm gguf:PATH` or "
        "`--large-llm openai:MODEL@URL` for a larger model."
    ),
]


def main() -> None:
    nb = new_notebook(cells=CELLS, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    out = Path(__file__).with_name("03_spring_crafter.ipynb")
    nbformat.write(nb, out)
    print(out)


if __name__ == "__main__":
    main()
