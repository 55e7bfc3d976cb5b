"""Builds notebooks/02_subgoal_teachers.ipynb (no outputs): `python notebooks/build_02_subgoal_teachers.py`."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell(
        "# Subgoal teachers guiding PPO on MiniGrid (Words as Beacons)\n\n"
        "A teacher reads the language view of a MiniGrid env and proposes the next **subgoal**; a Gymnasium "
        "wrapper pays a small, capped bonus when the agent reaches it; SB3's PPO learns as usual. The teacher "
        "(and its LLM) is used only during training: evaluation runs the policy alone.\n\n"
        "Budgets here are tiny so the notebook runs in the test suite; see `configs/minigrid_doorkey.yaml` and "
        "`benchmarks/minigrid_teachers.py` for real runs."
    ),
    new_code_cell(
        "from llmguide.envs.minigrid import make_minigrid\n"
        "env = make_minigrid('MiniGrid-DoorKey-5x5-v0')\n"
        "obs, info = env.reset(seed=0)\n"
        "print(info['text'])\n"
        "print(env.unwrapped.pprint_grid())"
    ),
    new_markdown_cell(
        "## Three kinds of subgoal, from the oracle\n"
        "`OracleTeacher` plans on the true grid with BFS (key -> door -> goal on DoorKey): the upper bound, "
        "and the fixture the tests use. Each subgoal carries its own achievement test."
    ),
    new_code_cell(
        "from llmguide.teachers import OracleTeacher, RandomTeacher\n"
        "for kind in ('positional', 'object', 'language'):\n"
        "    print(kind, '->', OracleTeacher(kind).propose(env, info).subgoal)\n"
        "print('random control ->', RandomTeacher('object', seed=0).propose(env, info).subgoal.text)"
    ),
    new_markdown_cell(
        "## The LLM teacher\n"
        "`SubgoalTeacher` asks the embedded SmolLM2-135M. In the default `choice` mode the answer is a "
        "constrained choice among the valid subgoals of the layout, so it is always valid (not always wise: "
        "a 135M model is a weak teacher). Answers are cached per (layout, progress) key, so asking again costs "
        "nothing."
    ),
    new_code_cell(
        "from llmguide.llm import METER\n"
        "from llmguide.teachers import SubgoalTeacher\n"
        "teacher = SubgoalTeacher('smollm2', kind='object')\n"
        "print(teacher.prompt(env, info, [], [c.text for c in teacher.candidates(env)])[1].content)\n"
        "first = teacher.propose(env, info)\n"
        "again = teacher.propose(env, info)\n"
        "print('answer:', first.subgoal.text, '| second time from cache:', again.cache_hit)\n"
        "print(teacher.stats)"
    ),
    new_markdown_cell(
        "Language subgoals are matched by a documented parse rule (verb + colour + object against the env's "
        "events), not by embeddings:"
    ),
    new_code_cell(
        "from llmguide.teachers import parse_instruction\n"
        "for text in ['pick up the yellow key', 'Open the door!', 'walk to the goal', 'dance']:\n"
        "    print(repr(text), '->', parse_instruction(text))"
    ),
    new_markdown_cell(
        "## Guidance as a wrapper\n"
        "`make_minigrid_env` stacks: language view -> `SubgoalRewardWrapper` (0.1 per subgoal, at most 0.3 per "
        "episode, each subgoal pays once) -> flat observation. Random actions, for a look at the bookkeeping:"
    ),
    new_code_cell(
        "import numpy as np\n"
        "from llmguide.agents import make_minigrid_env\n"
        "guided = make_minigrid_env('MiniGrid-DoorKey-5x5-v0', OracleTeacher('object'))()\n"
        "obs, info = guided.reset(seed=0)\n"
        "rng = np.random.default_rng(0)\n"
        "episodes = []\n"
        "while len(episodes) < 5:\n"
        "    obs, reward, terminated, truncated, info = guided.step(int(rng.integers(7)))\n"
        "    if terminated or truncated:\n"
        "        episodes.append(info['teacher'])\n"
        "        guided.reset()\n"
        "for ep in episodes:\n"
        "    print({k: ep[k] for k in ('subgoals_reached', 'bonus', 'task_return')})"
    ),
    new_markdown_cell(
        "## An experiment\n"
        "`Experiment` composes env + teacher + learner through the core every method shares, and writes a run dir "
        "(config, CSV + TensorBoard logs, checkpoints, learning-curve PNG, metrics.json in the common `RunMetrics` "
        "schema). A few thousand steps only, here."
    ),
    new_code_cell(
        "from llmguide import Experiment\n"
        "exp = Experiment(env='MiniGrid-DoorKey-5x5-v0', method='subgoal', teacher=OracleTeacher('object'), learner='PPO',\n"
        "                 total_steps=2048, seed=0, n_envs=4, eval={'every': 1024, 'episodes': 4},\n"
        "                 learner_kwargs={'n_steps': 128, 'batch_size': 128, 'n_epochs': 2})\n"
        "result = exp.run()\n"
        "m = result.metrics\n"
        "print(result.run_dir)\n"
        "print({k: m[k] for k in ('success', 'steps_to_target', 'steps_per_s')})\n"
        "tm = m['extras']['teacher_metrics']\n"
        "print({k: round(v, 3) if isinstance(v, float) else v for k, v in tm.items() if k != 'calls_curve'})"
    ),
    new_markdown_cell("Evaluation runs the trained policy on the plain env: no teacher, no LLM call."),
    new_code_cell(
        "calls = METER.snapshot().calls\n"
        "print(result.evaluate(episodes=5))\n"
        "assert METER.snapshot().calls == calls"
    ),
    new_code_cell(
        "from IPython.display import Image\n"
        "Image(filename=m['extras']['plot'])"
    ),
    new_markdown_cell(
        "## A stronger teacher without code changes\n"
        "Any local GGUF plugs in through its spec, e.g. `SubgoalTeacher('gguf:/models/qwen2.5-1.5b-instruct-q4_k_m.gguf', "
        "kind='language')`, or a server: `SubgoalTeacher('openai:qwen@http://127.0.0.1:8000/v1')` "
        "(start one with `llmguide serve --model PATH`). The same goes for the YAML config's `teacher.llm`."
    ),
]

nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
out = Path(__file__).with_name("02_subgoal_teachers.ipynb")
nbformat.write(nb, out)
print(out)
