"""llama.cpp GPU offload against the CPU on one machine, through llmguide's own paths.

Same model (the embedded SmolLM2-135M unless ``--model``), prompts and sampling, the two
placements side by side, calls interleaved and rotated so neither gets a quieter moment:

* generation tokens/s through ``load(spec, n_gpu_layers=N)`` (our LangChain chat model);
* a scored choice among Crafter's 22 achievements (``ChatLlamaCpp.score_options``, the path the
  subgoal teachers, SPRING and RLAdapter's guide use) after a short and a long prompt that
  change every call, so the whole prompt is evaluated: latency and prompt tokens/s;
* ``llmguide serve --n-gpu-layers N`` with the official ``openai`` client: tokens/s;
* what ``load()`` picks by default on this build (all layers when it has GPU offload), and
  the GPU memory each process holds (``nvidia-smi``), which shows the layers really moved.

N = 0 (CPU, llama.cpp's default threads) and N = -1 (every layer on the GPU). Needs a
llama-cpp-python built with CUDA (``make gpu``); on a CPU-only build it says so and exits 2.

    python benchmarks/gpu_offload.py --rounds 3 --out benchmarks/results/gpu_offload.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_layer import MAX_TOKENS, PROMPTS  # noqa: E402  (the same prompts as the CPU layer benchmark)

PLACEMENTS = {"cpu": 0, "gpu": -1}
MANUAL = (
    "Crafter is an open-world survival game. The player collects wood from trees, places a table, "
    "makes a wood pickaxe and a wood sword at a nearby table, collects stone with a pickaxe, places "
    "stone, makes stone tools, places a furnace next to a table, collects coal and iron, makes iron "
    "tools at a table next to a furnace, and collects diamonds with an iron pickaxe. Food, drink and "
    "energy fall over time: eat cows, drink water, sleep when tired. Zombies and skeletons attack. "
)


def _situation(i: int, long: bool) -> list[dict[str, str]]:
    """A guide question whose first line changes every call (nothing is reused from the last)."""
    manual = MANUAL * 12 if long else ""
    text = (f"Step {i}. {manual}You see grass, a tree {i % 5 + 1} steps north, water to the east. "
            f"Inventory: wood {i % 3}, sapling {i % 2}. Health 9, food {7 - i % 3}, drink 6. "
            "Which achievement should the player pursue next?")
    return [{"role": "user", "content": text}]


def _gpu_memory_mib() -> dict[int, int]:
    """GPU memory (MiB) held by each process, from nvidia-smi ({} when it cannot answer)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    held = {}
    for line in out.strip().splitlines():
        pid, _, mib = line.partition(",")
        if pid.strip().isdigit() and mib.strip().isdigit():
            held[int(pid)] = int(mib)
    return held


def _gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown GPU"


def _start_server(model: str, n_gpu_layers: int, port: int) -> subprocess.Popen:
    """``llmguide serve`` in a process of its own (through the CLI's Typer app, so no console
    script needs to be installed)."""
    from llmguide.net import wait_for_http

    proc = subprocess.Popen(
        [sys.executable, "-c", "from llmguide.cli import app; app()", "serve", "--model", model, "--port", str(port),
         "--n-ctx", "2048", "--n-gpu-layers", str(n_gpu_layers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    if wait_for_http(f"http://127.0.0.1:{port}/v1/models", proc, timeout=180, interval=0.5):
        return proc
    proc.kill()
    raise RuntimeError(f"llmguide serve --n-gpu-layers {n_gpu_layers} did not start")


def _rotated(names: list[str], k: int) -> list[str]:
    k %= len(names)
    return names[k:] + names[:k]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="smollm2 or a GGUF path")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the prompt set")
    parser.add_argument("--choices", type=int, default=20, help="scored choices per placement and prompt length")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_offload.json"))
    args = parser.parse_args()

    # llmguide.llm first: it sets OMP_WAIT_POLICY and loads llama.cpp before ssl (see llmguide/llm/_native.py)
    from llmguide.llm import gpu_offload_supported, load
    from llmguide.llm.llamacpp import score_reply_options
    from llmguide.metrics import CRAFTER_ACHIEVEMENTS
    from llmguide.net import free_port
    from llmguide.rundir import write_json

    if not gpu_offload_supported():
        print("this llama-cpp-python build has no GPU offload: rebuild it with CUDA (`make gpu`), then run again",
              file=sys.stderr)
        return 2
    import openai  # after llmguide.llm (above)

    default = load(args.model, max_tokens=MAX_TOKENS, cache=False)  # n_gpu_layers left to load()
    models = {name: load(args.model, n_ctx=4096, max_tokens=MAX_TOKENS, cache=False, n_gpu_layers=n)
              for name, n in PLACEMENTS.items()}
    options = [a.replace("_", " ") for a in CRAFTER_ACHIEVEMENTS]

    ports = {name: free_port() for name in PLACEMENTS}
    servers = {name: _start_server(args.model, n, ports[name]) for name, n in PLACEMENTS.items()}
    clients = {name: openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")
               for name, port in ports.items()}

    def generate(name: str, prompt: str) -> int:
        return models[name].invoke(prompt).usage_metadata["output_tokens"]

    def serve(name: str, prompt: str) -> int:
        out = clients[name].chat.completions.create(model="smollm2", messages=[{"role": "user", "content": prompt}],
                                                    max_tokens=MAX_TOKENS, temperature=0.0, seed=0)
        return out.usage.completion_tokens

    def choose(name: str, i: int, long: bool) -> int:
        llama, lock = models[name]._llama()
        with lock:
            _, evaluated = score_reply_options(llama, _situation(i, long), options)
        return evaluated

    names = list(PLACEMENTS)
    for name in names:  # warm-up: model load, first graphs
        generate(name, "Hello.")
        serve(name, "Hello.")
        choose(name, -1, False)
        choose(name, -2, True)
    held = _gpu_memory_mib()

    tokens = {f"{path}_{n}": 0 for path in ("generate", "serve") for n in names}
    seconds = dict.fromkeys(tokens, 0.0)
    for r in range(args.rounds):
        for i, prompt in enumerate(PROMPTS):
            for name in _rotated(names, r + i):
                for path, fn in (("generate", generate), ("serve", serve)):
                    t0 = time.perf_counter()
                    tokens[f"{path}_{name}"] += fn(name, prompt)
                    seconds[f"{path}_{name}"] += time.perf_counter() - t0
    choice_ms: dict[str, list[float]] = {f"{length}_{n}": [] for length in ("short", "long") for n in names}
    choice_tokens = dict.fromkeys(choice_ms, 0)
    for i in range(args.choices):
        for length in ("short", "long"):
            for name in _rotated(names, i):
                t0 = time.perf_counter()
                choice_tokens[f"{length}_{name}"] += choose(name, i, length == "long")
                choice_ms[f"{length}_{name}"].append((time.perf_counter() - t0) * 1e3)
    for proc in servers.values():
        proc.terminate()
        proc.wait(timeout=30)

    tps = {k: tokens[k] / seconds[k] for k in tokens}
    choice = {k: {"p50_ms": statistics.median(v), "mean_ms": statistics.fmean(v),
                  "prompt_tokens_per_s": choice_tokens[k] / (sum(v) / 1e3),
                  "tokens_per_choice": choice_tokens[k] / len(v)}
              for k, v in choice_ms.items()}
    choice_speedup = {f"choice_{length}": choice[f"{length}_cpu"]["mean_ms"] / choice[f"{length}_gpu"]["mean_ms"]
                      for length in ("short", "long")}
    result = {
        "gpu": _gpu_name(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores; CPU placement uses llama.cpp's default threads",
        "llama_cpp_python": version("llama_cpp_python"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "load_default_n_gpu_layers": default.n_gpu_layers,
        "gpu_memory_mib_by_process": {("this process" if pid == os.getpid() else
                                       next((f"serve {n}" for n, p in servers.items() if p.pid == pid), str(pid))): mib
                                      for pid, mib in held.items()},
        "tokens_per_s": tps,
        "speedup_gpu_vs_cpu": {"generate": tps["generate_gpu"] / tps["generate_cpu"],
                               "serve": tps["serve_gpu"] / tps["serve_cpu"],
                               **choice_speedup},
        "scored_choice": choice,
        "options": len(options),
        "max_tokens": MAX_TOKENS, "rounds": args.rounds, "prompts": len(PROMPTS), "choices": args.choices,
    }
    write_json(args.out, result)
    print(f"load() default on this build: n_gpu_layers={default.n_gpu_layers}; GPU memory held: "
          f"{result['gpu_memory_mib_by_process']}")
    print(f"{'path':<34}{'cpu':>10}{'gpu':>10}{'gpu/cpu':>9}")
    for path in ("generate", "serve"):
        print(f"{path + ' tokens/s':<34}{tps[path + '_cpu']:>10.1f}{tps[path + '_gpu']:>10.1f}"
              f"{result['speedup_gpu_vs_cpu'][path]:>9.2f}")
    for length in ("short", "long"):
        c, g = choice[f"{length}_cpu"], choice[f"{length}_gpu"]
        print(f"{f'choice of {len(options)}, {length} prompt, ms':<34}{c['mean_ms']:>10.1f}{g['mean_ms']:>10.1f}"
              f"{result['speedup_gpu_vs_cpu']['choice_' + length]:>9.2f}   "
              f"({c['tokens_per_choice']:.0f} tokens evaluated per choice)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
