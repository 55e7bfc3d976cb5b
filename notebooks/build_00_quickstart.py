"""Builds notebooks/00_quickstart.ipynb (no outputs committed): `.venv/bin/python notebooks/build_00_quickstart.py`."""
import nbformat as nbf
from pathlib import Path

def nb(cells):
    book = nbf.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    book.cells = [nbf.v4.new_markdown_cell(c[1]) if c[0] == "md" else nbf.v4.new_code_cell(c[1]) for c in cells]
    return book

quick = nb([
    ("md", "# llmguide quickstart\n\nCompose a teacher with a learner, train briefly, read the report. "
           "The budget here is tiny (a smoke run on CPU); raise `total_steps` to ~50k for DoorKey-5x5 to see the oracle teacher's effect."),
    ("code", "import tempfile\nfrom pathlib import Path\n\nworkdir = Path(tempfile.mkdtemp(prefix=\"llmguide-quickstart-\"))"),
    ("md", "## Five lines: env + teacher + learner -> run -> evaluate\n\n`OracleTeacher` is the scripted upper bound; "
           "swap in `SubgoalTeacher(llm=\"smollm2\", kind=\"object\")` for an LLM teacher (any `gguf:PATH` or `openai:MODEL` spec works)."),
    ("code", "from llmguide import Experiment\nfrom llmguide.teachers import OracleTeacher\n\n"
             "exp = Experiment(env=\"MiniGrid-DoorKey-5x5-v0\", method=\"subgoal\", teacher=OracleTeacher(\"object\"),\n"
             "                 learner=\"PPO\", total_steps=256, seed=0, n_envs=2, eval={\"every\": 128, \"episodes\": 2},\n"
             "                 run_dir=workdir / \"oracle\")\n"
             "result = exp.run()\n"
             "result.evaluate(episodes=2)  # the policy alone: no teacher, no LLM"),
    ("md", "## The same learner without a teacher, for comparison"),
    ("code", "plain = Experiment(env=\"MiniGrid-DoorKey-5x5-v0\", method=\"subgoal\", teacher=None, learner=\"PPO\",\n"
             "                   total_steps=256, seed=0, n_envs=2, eval={\"every\": 128, \"episodes\": 2},\n"
             "                   run_dir=workdir / \"plain\").run()\n"
             "exp.to_config()  # the same run as a `llmguide run` config"),
    ("md", "## One report across runs\n\n`compare` (also `llmguide report RUN_DIR... --out DIR` on the command line) writes "
           "`report.md` and PNGs: learning curves with seed spread, final scores, LLM cost and throughput."),
    ("code", "from llmguide.report import compare\n\nreport = compare([result, plain], workdir / \"report\")\nreport.show()"),
    ("code", "assert report.path.exists() and len(report.rows) == 2\nprint(report.path)"),
])

nbf.write(quick, Path(__file__).resolve().parent / "00_quickstart.ipynb")
