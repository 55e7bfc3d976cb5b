"""Builds notebooks/08_self_taught_teacher.ipynb (no outputs): `python notebooks/build_08_self_taught_teacher.py`."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell(
        "# A teacher that learns to teach\n\n"
        "The embedded SmolLM2-135M is a weak subgoal teacher on MiniGrid (it agrees with the oracle's next "
        "subgoal less often than a random choice does). The self-taught teacher improves it from the run's own "
        "**hindsight**: episodes that succeeded say which event came next (key, then door, then goal); a "
        "background process LoRA-tunes the model on those examples in stages, and the teacher hot-swaps each "
        "new stage while PPO trains. The oracle only *scores* the teacher, it never labels data.\n\n"
        "Budgets are tiny so the notebook runs in the test suite; see `configs/self_taught_doorkey.yaml` and "
        "`benchmarks/self_taught_teacher.py` for real runs."
    ),
    new_markdown_cell(
        "## Hindsight from an episode\n"
        "`HindsightRecorder` sits on the language view: it keeps what the agent has *seen* and *done* (no "
        "positions, so examples transfer across layouts), adds an `entered a new room` event, and when an "
        "episode succeeds writes (situation -> next useful event) rows. Here a scripted expert plays the "
        "episode, to be quick; in a run, the learner's own successful episodes do."
    ),
    new_code_cell(
        "import json, tempfile\n"
        "from pathlib import Path\n"
        "from llmguide.agents.hindsight import HindsightRecorder, build_probe, expert_episode\n"
        "from llmguide.envs.minigrid import make_minigrid\n"
        "work = Path(tempfile.mkdtemp())\n"
        "env = HindsightRecorder(make_minigrid('MiniGrid-DoorKey-5x5-v0'), work / 'hindsight.jsonl')\n"
        "for seed in (3, 4, 5):\n"
        "    assert expert_episode(env, seed)\n"
        "print('events:', [e for _, e in env._events])\n"
        "rows = [json.loads(line) for line in (work / 'hindsight.jsonl').read_text().splitlines()]\n"
        "print(rows[1]['messages'][-1]['content'])\n"
        "print('answer:', rows[1]['answer'], '| examples:', len(rows))"
    ),
    new_markdown_cell(
        "## The teacher: likelihood of each option under the model (+ its LoRA)\n"
        "The options are the layout's targets as instructions; the teacher takes the most likely one "
        "(length-normalised) and expresses it in its subgoal kind. Answers are cached per (situation, options, "
        "stage), with colours renamed by the part they play, so a MultiRoom layout in new colours reuses them."
    ),
    new_code_cell(
        "from llmguide.teachers.self_taught import SelfTaughtTeacher\n"
        "teacher = SelfTaughtTeacher('object', lora_r=4, probe_episodes=0)\n"
        "teacher.bind(work)\n"
        "probe_env = HindsightRecorder(make_minigrid('MiniGrid-DoorKey-5x5-v0'))\n"
        "_, info = probe_env.reset(seed=3)\n"
        "first = teacher.propose(probe_env, info)\n"
        "print('stage', teacher.stage, '->', first.subgoal.text)"
    ),
    new_markdown_cell(
        "## One tuning stage, then the hot swap\n"
        "The probe: situations of expert episodes on held-out seeds, labelled by the oracle (scoring only). "
        "A run's stage happens in a background process (`python -m llmguide.teachers.lora_tuning`); here the "
        "same SFT runs in-process for a few steps, is saved as stage 1, and the teacher swaps it in."
    ),
    new_code_cell(
        "from llmguide.teachers.lora_tuning import choice_accuracy\n"
        "probe = build_probe('MiniGrid-DoorKey-5x5-v0', range(100_000, 100_003))\n"
        "lm = teacher.lm\n"
        "before = choice_accuracy(lm, probe)\n"
        "losses = lm.train_steps([(r['messages'], r['answer']) for r in rows], steps=4, lr=3e-3, batch_size=4)\n"
        "lm.save(teacher.stage_dir(1))\n"
        "teacher.load_stage(1)\n"
        "after = choice_accuracy(lm, probe)\n"
        "print(f\"SFT loss {losses[0]:.2f} -> {losses[-1]:.2f}; probe accuracy {before['accuracy']:.2f} -> {after['accuracy']:.2f}\"\n"
        "      f\" on {after['n']} situations\")\n"
        "print('stage', teacher.stage, '->', teacher.propose(probe_env, info).subgoal.text)"
    ),
    new_markdown_cell(
        "## In a run\n"
        "Through `Experiment`, the CLI (`llmguide run configs/self_taught_doorkey.yaml`) or `llmguide sweep`, a "
        "`teacher: {type: self_taught}` config does all of the above: the guidance wrapper asks asynchronously "
        "(the learner never waits), the recorder writes `RUN/self_taught/hindsight.jsonl`, and every "
        "`tuning.stage_examples` new examples a stage starts; each stage's examples, seconds and probe accuracy "
        "before/after are in `metrics.json` under `extras.self_taught`. `tuning.max_stages: 0` is the frozen "
        "control. Here the tuned teacher object is passed in, for a few hundred steps:"
    ),
    new_code_cell(
        "from llmguide import Experiment\n"
        "exp = Experiment(env='MiniGrid-DoorKey-5x5-v0', method='subgoal', teacher=teacher, learner='PPO',\n"
        "                 total_steps=256, seed=0, n_envs=2, env_kwargs={'max_steps': 40},\n"
        "                 guidance={'asynchronous': True}, eval={'every': 0, 'episodes': 2},\n"
        "                 learner_kwargs={'n_steps': 64, 'batch_size': 64, 'n_epochs': 1}, policy_kwargs={'net_arch': [16]})\n"
        "m = exp.run().metrics\n"
        "tm = m['extras']['teacher_metrics']\n"
        "print({k: tm[k] for k in ('teacher_queries', 'teacher_cache_hit_rate', 'teacher_oracle_agreement')})\n"
        "print({k: v for k, v in m['extras']['self_taught'].items() if k != 'stages'})"
    ),
]

nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
out = Path(__file__).with_name("08_self_taught_teacher.ipynb")
nbformat.write(nb, out)
print(out)
