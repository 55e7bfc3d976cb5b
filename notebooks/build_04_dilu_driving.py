"""Build notebooks/04_dilu_driving.ipynb (no outputs): `python notebooks/build_04_dilu_driving.py`."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    new_markdown_cell(
        "# DiLu: a driver that reasons, reflects and remembers\n\n"
        "`DiLuAgent` drives highway-env from its text view: it retrieves the most similar past "
        "experiences from a persistent vector memory (Chroma + the offline all-MiniLM-L6-v2), reasons "
        "step by step after fixed driving rules, and picks one of the meta-actions available now with "
        "constrained decoding. After a crash it reflects (finds the wrong decision, stores the corrected "
        "one); safe episodes store their decisions. No gradient steps.\n\n"
        "Budgets here are tiny (3 decisions per episode, a short chain of thought) so the notebook runs "
        "in about a minute on a CPU with the embedded 135M model; `configs/dilu_highway.yaml` has DiLu's "
        "full setting."
    ),
    new_code_cell(
        "import os, tempfile\n"
        "os.environ.setdefault('MPLBACKEND', 'Agg')\n"
        "import matplotlib.pyplot as plt\n"
        "from llmguide.agents.dilu import DiLuAgent, DrivingLog, make_dilu_env, no_collision\n"
        "from llmguide.agents.loop import run_episodes, summarize\n"
        "from llmguide.llm import load\n"
        "from llmguide.memory import ExperienceMemory\n\n"
        "llm = load('smollm2', n_ctx=2048)\n"
        "memory = ExperienceMemory(tempfile.mkdtemp(prefix='dilu-memory-'))   # persistent: reopen it in a later run\n"
        "env = make_dilu_env(render_mode='rgb_array')   # highway-v0, 4 lanes, 15 vehicles, density 2\n"
        "agent = DiLuAgent(llm=llm, memory=memory, k=2, cot_tokens=8)\n"
        "obs, info = env.reset(seed=0)\n"
        "print(info['text'])"
    ),
    new_markdown_cell("## One episode, frame by frame\nThe wrapper grabs a rendered frame before each decision."),
    new_code_cell(
        "frames = []\n"
        "log = DrivingLog()\n"
        "class Filmed:\n"
        "    def __init__(self, inner): self.inner = inner\n"
        "    def reset(self, info): self.inner.reset(info)\n"
        "    def act(self, obs, info):\n"
        "        frames.append(env.render())\n"
        "        return self.inner.act(obs, info)\n"
        "    def end_episode(self, record): self.inner.end_episode(record)\n\n"
        "records = run_episodes(Filmed(log.wrap(agent)), env, 1, seed=0, max_steps=3,\n"
        "                       success_fn=no_collision, extra_fn=log.extra, progress=False)\n"
        "fig, axes = plt.subplots(len(frames), 1, figsize=(9, 1.6 * len(frames)), squeeze=False)\n"
        "for i, (ax, frame, step) in enumerate(zip(axes[:, 0], frames, agent.trace)):\n"
        "    ax.imshow(frame); ax.set_axis_off(); ax.set_title(f'decision {i}: {step.decision}', fontsize=9)\n"
        "plt.tight_layout(); plt.show()\n"
        "for step in agent.trace:\n"
        "    print(step.decision, '|', step.reasoning[:120].replace('\\n', ' '))\n"
        "print(records[0].extra)"
    ),
    new_markdown_cell("## The memory grows with experience\nA few more short episodes; each safe one adds its "
                      "decisions, each crash adds one corrected decision."),
    new_code_cell(
        "more = run_episodes(log.wrap(agent), env, 2, seed=1, max_steps=2, success_fn=no_collision,\n"
        "                    extra_fn=log.extra, progress=False)\n"
        "print(summarize(records + more))\n"
        "print(memory.stats())\n"
        "fig, ax = plt.subplots(figsize=(5, 3))\n"
        "ax.plot(range(len(agent.memory_sizes)), agent.memory_sizes, marker='o', label='this notebook')\n"
        "from pathlib import Path\n"
        "import json, llmguide\n"
        "bench = Path(llmguide.__file__).resolve().parents[1] / 'benchmarks' / 'results' / 'dilu_highway.json'\n"
        "if bench.is_file():\n"
        "    for spec, growth in json.loads(bench.read_text()).get('memory_growth', {}).items():\n"
        "        ax.plot(range(len(growth['sizes'])), growth['sizes'], marker='.', label=f'benchmark build ({spec})')\n"
        "ax.set_xlabel('episodes'); ax.set_ylabel('experiences in memory'); ax.legend(); plt.tight_layout(); plt.show()"
    ),
    new_markdown_cell("## Retrieval: the nearest past scenes become few-shot examples"),
    new_code_cell(
        "obs, info = env.reset(seed=5)\n"
        "for exp in memory.search(info['text'], k=2):\n"
        "    print(f'{exp.score:.3f}', exp.source, exp.decision, '|', exp.scene[:90])\n"
        "env.close()"
    ),
]


def build(path: Path | None = None) -> Path:
    path = path or Path(__file__).resolve().parent / "04_dilu_driving.ipynb"
    nb = new_notebook(cells=CELLS, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    print(build())
