"""LLM layer overhead: our LangChain model vs raw llama.cpp, cache hits, and the server.

Same prompts, model and sampling params, side by side in one process:

* tokens/s through ``load("smollm2")`` vs raw ``llama_cpp.Llama.create_chat_completion``
  (two separate ``Llama`` instances, calls interleaved, so neither gets the
  other's prefix cache or a quieter machine);
* latency of a cached call (SQLite hit);
* tokens/s through ``llmguide serve`` + the official ``openai`` client vs in-process.

    python benchmarks/llm_layer.py --rounds 3 --out benchmarks/results/llm_layer.json
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROMPTS = [
    "Describe a grid world with a locked door in two sentences.",
    "List three things an agent should do to open a locked door.",
    "What is the first step to collect wood in a survival game?",
    "Explain in one paragraph why exploration matters in reinforcement learning.",
    "Give a short plan for a car to overtake safely on a highway.",
    "What does a key do in a maze game? Answer briefly.",
]
MAX_TOKENS = 64


def _start_server(port: int) -> subprocess.Popen:
    from llmguide.net import wait_for_http

    cli = Path(sys.executable).with_name("llmguide")
    proc = subprocess.Popen(
        [str(cli), "serve", "--model", "smollm2", "--port", str(port), "--n-ctx", "2048"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if wait_for_http(f"http://127.0.0.1:{port}/v1/models", proc, timeout=180, interval=0.5):
        return proc
    proc.kill()
    raise RuntimeError("llmguide serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the prompt set")
    parser.add_argument("--cache-hits", type=int, default=300, help="cached calls to time")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/llm_layer.json"))
    args = parser.parse_args()

    from llmguide.llm import gpu_offload_supported, load, smollm2_path  # first: sets OMP_WAIT_POLICY
    from llmguide.net import free_port

    import llama_cpp
    import openai
    from llmguide.rundir import write_json

    path = str(smollm2_path())
    raw = llama_cpp.Llama(model_path=path, n_ctx=2048, seed=0, verbose=False)
    layer = load("smollm2", n_ctx=2048, max_tokens=MAX_TOKENS, cache=False)
    port = free_port()
    server = _start_server(port)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")

    def run_raw(prompt: str) -> int:
        out = raw.create_chat_completion(
            messages=[{"role": "user", "content": prompt}], max_tokens=MAX_TOKENS, temperature=0.0, seed=0
        )
        return out["usage"]["completion_tokens"]

    def run_layer(prompt: str) -> int:
        return layer.invoke(prompt).usage_metadata["output_tokens"]

    def run_server(prompt: str) -> int:
        out = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": prompt}], max_tokens=MAX_TOKENS, temperature=0.0, seed=0
        )
        return out.usage.completion_tokens

    paths = {"raw": run_raw, "layer": run_layer, "server": run_server}
    for fn in paths.values():  # warm-up: model load, first graph
        fn("Hello.")
    tokens = {k: 0 for k in paths}
    seconds = {k: 0.0 for k in paths}
    order = list(paths)
    for r in range(args.rounds):
        for i, prompt in enumerate(PROMPTS):
            rotated = order[(r + i) % 3 :] + order[: (r + i) % 3]  # rotate who goes first
            for name in rotated:
                t0 = time.perf_counter()
                tokens[name] += paths[name](prompt)
                seconds[name] += time.perf_counter() - t0
    server.terminate()
    server.wait(timeout=30)
    tps = {k: tokens[k] / seconds[k] for k in paths}

    with tempfile.TemporaryDirectory() as tmp:
        cached = load("smollm2", n_ctx=2048, max_tokens=MAX_TOKENS, cache=Path(tmp) / "c.sqlite")
        cached.invoke(PROMPTS[0])
        hits = []
        for _ in range(args.cache_hits):
            t0 = time.perf_counter()
            cached.invoke(PROMPTS[0])
            hits.append((time.perf_counter() - t0) * 1e3)
    hits_ms = np.asarray(hits)

    result = {
        "ratio_layer_vs_raw": tps["layer"] / tps["raw"],
        "ratio_server_vs_inprocess": tps["server"] / tps["layer"],
        "cache_hit_ms_p50": float(np.percentile(hits_ms, 50)),
        "cache_hit_ms_p95": float(np.percentile(hits_ms, 95)),
        "tokens_per_s": tps,
        "completion_tokens": tokens,
        "max_tokens": MAX_TOKENS,
        "rounds": args.rounds,
        "prompts": len(PROMPTS),
        "gpu_offload": gpu_offload_supported(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
    }
    write_json(args.out, result)
    print(f"{'path':<28}{'tokens/s':>10}{'ratio':>10}")
    print(f"{'raw llama_cpp':<28}{tps['raw']:>10.1f}{1.0:>10.3f}")
    print(f"{'load(smollm2) (LangChain)':<28}{tps['layer']:>10.1f}{result['ratio_layer_vs_raw']:>10.3f}")
    print(f"{'llmguide serve + openai':<28}{tps['server']:>10.1f}{tps['server'] / tps['raw']:>10.3f}")
    print(f"cache hit latency: p50 {result['cache_hit_ms_p50']:.3f} ms, p95 {result['cache_hit_ms_p95']:.3f} ms")
    print(f"server vs in-process layer: {result['ratio_server_vs_inprocess']:.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
