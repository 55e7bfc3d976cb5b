"""Build notebooks/06_rladapter_crafter.ipynb (no outputs): `python notebooks/build_06_rladapter_crafter.py`."""
from pathlib import Path

import nbformat as nbf

cells = []
md = lambda s: cells.append(nbf.v4.new_markdown_cell(s.strip()))
code = lambda s: cells.append(nbf.v4.new_code_cell(s.strip()))

md("""
# 06 · RLAdapter on Crafter

RLAdapter (2023) puts a small **adapter LM** between an RL agent and a frozen **guide LLM**.
Every ~100 env steps the adapter reads the agent's state, what it did recently and its
**comprehension score** (how well that behaviour matched the last subgoal: a sigmoid of
sentence-embedding similarity), and writes an analysis; the guide reads state + analysis and
names the next subgoal. PPO is conditioned on the embedded subgoal. The adapter is LoRA-tuned
(SFT) in stages, in a background process, on the records the run produced.

Here everything is local and offline: the adapter is the embedded SmolLM2-135M GGUF
dequantized by `transformers` with a `peft` LoRA, the guide is the same model through
llama.cpp, the embeddings are the packaged all-MiniLM-L6-v2. Budgets are tiny so the notebook
runs in about a minute; `benchmarks/rladapter_crafter.py` has the real comparison.
""")
code("""
import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from llmguide.teachers.rladapter import comprehension_score, behaviour_text, SUBGOALS

for behaviour in (["collected wood", "collected wood"], ["drank water", "fell asleep"]):
    text = behaviour_text(behaviour)
    print(f"{text!r:40} vs 'collect wood': {comprehension_score(text, 'collect wood'):.3f}")
""")
md("""
## One guidance exchange

The teacher keeps one slot per env. `advise` scores the behaviour since the last advice,
asks the adapter for an analysis and the guide for a subgoal (a constrained choice among the
22 achievement subgoals, so even a 135M model always answers with a valid one).
""")
code("""
import tempfile
from pathlib import Path
from llmguide.envs import make
from llmguide.teachers.rladapter import RLAdapterTeacher

run_dir = Path(tempfile.mkdtemp(prefix="rladapter-nb-"))
env = make("llmguide/Crafter-v0", area=(32, 32))
obs, info = env.reset(seed=0)
teacher = RLAdapterTeacher(adapter="smollm2", llm="smollm2", every=100, run_dir=run_dir,
                           max_new_tokens=24, lora_r=4)
first = teacher.advise(0, info, events=[])
events = []
for _ in range(30):
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    events += info["events"]
second = teacher.advise(0, info, events=events)
print("state   :", info["text"][:160], "...")
print("analysis:", second.analysis)
print("subgoal :", first.subgoal, "->", second.subgoal, f"(comprehension {second.score:.3f})")
print("buffer  :", teacher.buffer.records()[0]["outcome"])
""")
md("""
## A stage of adapter fine-tuning

In a run, the callback starts a stage once the buffer gives `min_examples` SFT examples after
the `keep` filter (64 by default) and `min_new_records` new records came in, at least
`stage_every` steps after the last: a separate process SFT-tunes the LoRA on the best buffer
records and saves it to `adapter/stage_K`; `teacher.poll()` swaps it in when ready while PPO
keeps training, and `metrics.json` keeps per stage its examples, seconds, queries served and
comprehension (`extras.stages`). Variant `frozen` keeps the base adapter, untuned, as the control. Here we call the same stage function in-process on a
tiny buffer to see that the adapter's next-token distribution moves.
""")
code("""
from llmguide.teachers.rladapter_finetune import adapter_messages, finetune_stage, AdapterLM

prompt = adapter_messages(info["text"], behaviour_text(events), first.subgoal, second.score)
before = teacher.adapter.logits(prompt)
stats = finetune_stage(teacher.buffer.path, run_dir / "adapter" / "stage_1", init=run_dir / "adapter" / "stage_0",
                       lora_r=4, steps=2, batch_size=1, keep=1.0)
teacher.adapter.load_stage(run_dir / "adapter" / "stage_1", stage=1)
print(stats)
print("max logit change after the stage:", float((teacher.adapter.logits(prompt) - before).abs().max()))
""")
md("""
## A (very) short guided PPO run

`llmguide run configs/rladapter_crafter.yaml` does the same as `prepare` + `run` below: the core
trains PPO with the method's env, network and callback, evaluates the policy alone (no LLM, zero
subgoal) and writes `metrics.json`. Variants: `plain` (PPO, same network, subgoal input zero),
`guide` (guide LLM only), `rladapter`. The subgoal bonus is off by default, as in the paper.
""")
code("""
from llmguide.core import prepare, run

config = {"method": "rladapter", "variant": "rladapter", "total_steps": 128, "n_envs": 1, "every": 64,
          "stage_every": 0, "max_new_tokens": 16, "lora_r": 4, "env_kwargs": {"area": [32, 32], "length": 200},
          "learner_kwargs": {"n_steps": 64, "batch_size": 64, "n_epochs": 1},
          "net": {"channels": [4, 8, 8], "image_features": 16, "subgoal_features": 8, "net_arch": [8]},
          "eval": {"every": 0, "episodes": 2, "n_envs": 2}}
metrics = run(prepare(config), run_dir / "ppo")
extras = metrics.extras
print({"steps": metrics.steps, "eval Crafter score": metrics.score, "training Crafter score": extras["train_crafter"]["crafter_score"],
       "episodes": metrics.episodes, "bonus": extras["bonus"]})
print("subgoals:", extras["teacher"]["subgoal_counts"], "comprehension:", extras["comprehension_by_stage"])
print((run_dir / "ppo" / "subgoals.jsonl").read_text().splitlines()[0][:200])
""")
md("""
## Scaling up

Pass a stronger guide (`llm: gguf:/path/to/model.gguf` or `openai:MODEL@http://host:port/v1`)
and/or adapter (`adapter: hf:/path/to/local/model`), raise `total_steps`, and set
`every: 100` as in the paper. The 135M guide mostly repeats one subgoal; see
`benchmarks/RESULTS.md` for what that does at a CPU-sized budget.
""")

nb = nbf.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
nbf.write(nb, Path(__file__).resolve().parent / "06_rladapter_crafter.ipynb")
