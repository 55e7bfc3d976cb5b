"""Builds notebooks/07_scienceworld.ipynb (no outputs committed): `.venv/bin/python notebooks/build_07_scienceworld.py`."""
import nbformat as nbf
from pathlib import Path

def nb(cells):
    book = nbf.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    book.cells = [nbf.v4.new_markdown_cell(c[1]) if c[0] == "md" else nbf.v4.new_code_cell(c[1]) for c in cells]
    return book

sw = nb([
    ("md", "# ScienceWorld: an LLM agent with injected knowledge\n\n"
           "The agent acts only through ScienceWorld's valid actions: the valid list (up to ~1000 in a room) is pre-filtered "
           "to the top-K most task-relevant ones and the LLM picks one with constrained choice, so it can never emit an invalid action. "
           "Two knowledge switches (after Chhikara et al., 2023): `memory` (previous correct actions from the vector memory) and "
           "`affordances` (what the relevant objects afford). Needs Java. Tiny budgets: the embedded 135M model is a weak reasoner; "
           "`benchmarks/scienceworld_agents.py` has the measured comparison."),
    ("code", "import tempfile\nfrom pathlib import Path\n\nworkdir = Path(tempfile.mkdtemp(prefix=\"llmguide-sw-\"))"),
    ("md", "## What each switch adds to the prompt"),
    ("code", "from llmguide.envs import make\nfrom llmguide.agents.scienceworld import ScienceWorldAgent, ListActionMemory, seed_memory_from_gold\n\n"
             "env = make(\"llmguide/ScienceWorld-v0\", task=\"find-living-thing\", variation=0, step_limit=20)\n"
             "memory = ListActionMemory()\n"
             "print(\"correct actions from a gold path:\", seed_memory_from_gold(memory, env, [1]))\n"
             "obs, info = env.reset(options={\"variation\": 0})\n"
             "agent = ScienceWorldAgent(\"smollm2\", memory=memory, affordances=True, top_k=8)\n"
             "agent.reset(info)\nagent._observe(obs, info)\n"
             "print(agent.prompt(info)[1].content)\nprint(\"candidates:\", agent.candidates(info))"),
    ("md", "## A few steps through the shared evaluation loop"),
    ("code", "from llmguide.agents.loop import run_episodes, summarize\n\n"
             "records = run_episodes(agent, env, 1, max_steps=2, progress=False)\n"
             "env.close()\nprint(summarize(records))\nfor row in agent.log:\n    print(row[\"choice\"], \"<-\", row[\"candidates\"][:4])"),
    ("md", "## Runs and a report: random baseline vs the LLM agent\n\n"
           "`llmguide.core` runs the `scienceworld` method exactly as `llmguide run configs/scienceworld.yaml` does: "
           "a run dir with config.yaml, episodes.jsonl, logs/ and metrics.json (score 0-100; per-task scores under `extras`)."),
    ("code", "from llmguide.core import prepare, run\nfrom llmguide.report import compare\n\n"
             "dirs = []\nfor name, extra in ((\"random\", {\"agent\": \"random\"}), (\"llm+affordances\", {\"agent\": \"llm\", \"affordances\": True})):\n"
             "    cfg = {\"method\": \"scienceworld\", \"name\": name, \"tasks\": [\"find-living-thing\"], \"variations\": [0], \"max_steps\": 1, \"seed\": 0, **extra}\n"
             "    metrics = run(prepare(cfg), workdir / name)\n"
             "    print(name, \"score\", metrics.score, \"per task\", metrics.extras[\"per_task_score\"])\n"
             "    dirs.append(workdir / name)\n\n"
             "compare(dirs, workdir / \"report\").show()"),
])
nbf.write(sw, Path(__file__).resolve().parent / "07_scienceworld.ipynb")
