"""One LLM server for many learners: N learner processes (N = 1, 2, 4) sharing one `llmguide serve`
(``openai:smollm2@URL``) vs each loading its own llama.cpp copy of the model (``smollm2``).

Each learner process is what a guided run holds: torch, SB3 and a PPO model on a
MiniGrid VecEnv, plus a `SubgoalTeacher` (object subgoals, KeyCorridorS3R1, teacher
and response caches off so every question reaches the model). The learners load
first, wait at a barrier, then ask their questions at the same time; each records
its teacher latency per question and its own memory (psutil: USS = private pages,
PSS = private + its share of shared pages such as a model file mapped by several
processes, RSS = all resident pages). The server's memory is recorded too, since
in the shared arm the model lives there.

The same work per question in both arms: the choice is scored, in-process by
llama.cpp or on the server by `llmguide serve`'s ``/v1/llmguide/score`` route
(same chat template and scorer). Each learner reports how its choices were made
(``choice_modes``) and its fallbacks, so a run where the server path fell back to
generation shows it. (Before that route existed the server arm generated every
answer, and its latencies were not comparable.)

    python benchmarks/shared_server.py                       # N = 1, 2, 4; 8 questions per learner
    python benchmarks/shared_server.py --n 1 2 --questions 2 --out /tmp/s.json   # smoke

Writes ``benchmarks/results/shared_server.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
ENV = "MiniGrid-KeyCorridorS3R1-v0"


def _memory(pid: int, with_children: bool = False) -> dict[str, float]:
    """USS/PSS/RSS in MiB of a process (and its children: the server runs in one)."""
    import psutil

    procs = [psutil.Process(pid)]
    if with_children:
        procs += procs[0].children(recursive=True)
    total = {"uss_mib": 0.0, "pss_mib": 0.0, "rss_mib": 0.0}
    for p in procs:
        info = p.memory_full_info()
        total["uss_mib"] += info.uss / 2**20
        total["pss_mib"] += getattr(info, "pss", 0) / 2**20
        total["rss_mib"] += info.rss / 2**20
    return {k: round(v, 1) for k, v in total.items()}


def learner(spec: str, questions: int, seed: int, barrier: Path, out: Path) -> None:
    """One learner process: build the learner and the teacher, wait for the others, ask, report."""
    from llmguide.agents.guidance import make_minigrid_env
    from llmguide.envs.minigrid import make_minigrid
    from llmguide.teachers import SubgoalTeacher
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from llmguide.llm import METER

    kwargs: dict[str, Any] = {"cache": False}
    if spec.startswith("openai:"):
        kwargs["timeout"] = 600.0
    teacher = SubgoalTeacher(spec, "object", cache=None, max_queries=None, seed=seed, llm_kwargs=kwargs)
    venv = DummyVecEnv([make_minigrid_env(ENV, teacher)] * 2)
    PPO("MlpPolicy", venv, n_steps=32, batch_size=32, policy_kwargs={"net_arch": [64, 64]}, device="cpu")
    env = make_minigrid(ENV)
    _, info = env.reset(seed=10_000 + seed)
    teacher.propose(env, info)  # the model loaded (or the server reached) before the clock starts
    (barrier.parent / f"ready-{seed}").touch()
    while not barrier.exists():
        time.sleep(0.05)
    latencies = []
    for q in range(questions):
        _, info = env.reset(seed=1000 * (seed + 1) + q)
        start = time.perf_counter()
        teacher.propose(env, info)
        latencies.append(time.perf_counter() - start)
    snap = METER.snapshot()
    out.write_text(json.dumps({"seed": seed, "latencies_s": latencies, "memory": _memory(os.getpid()),
                               "llm_questions": teacher.stats.llm_queries,
                               "fallbacks": dict(getattr(snap, "fallback_reasons", {}) or {}),
                               "choice_modes": _modes(snap.choices)}))


def _modes(choices: dict[str, dict[str, Any]]) -> dict[str, int]:
    """How the choices were made, over every call site: score, shuffle (generated), ..."""
    total: dict[str, int] = {}
    for site in choices.values():
        for mode, count in (site.get("modes") or {}).items():
            total[mode] = total.get(mode, 0) + count
    return total


def run_group(spec: str, n: int, questions: int, work: Path, server_pid: int | None) -> dict[str, Any]:
    """Start ``n`` learners, release them together, collect their reports (and the server's memory)."""
    group = Path(tempfile.mkdtemp(prefix=f"n{n}-", dir=work))
    barrier = group / "go"
    procs = [
        subprocess.Popen([sys.executable, __file__, "--learner", spec, "--questions", str(questions), "--seed", str(i),
                          "--barrier", str(barrier), "--report", str(group / f"learner-{i}.json")])
        for i in range(n)
    ]
    while sum((group / f"ready-{i}").exists() for i in range(n)) < n:
        if any(p.poll() not in (None, 0) for p in procs):
            raise RuntimeError(f"a learner failed to start ({spec}, n={n})")
        time.sleep(0.2)
    began = time.perf_counter()
    barrier.touch()
    peak_server: dict[str, float] | None = None
    while any(p.poll() is None for p in procs):
        if server_pid is not None:
            now = _memory(server_pid, with_children=True)
            peak_server = now if peak_server is None or now["rss_mib"] > peak_server["rss_mib"] else peak_server
        time.sleep(0.5)
    wall = time.perf_counter() - began
    if any(p.returncode != 0 for p in procs):
        raise RuntimeError(f"a learner failed ({spec}, n={n})")
    reports = [json.loads((group / f"learner-{i}.json").read_text()) for i in range(n)]
    lat = sorted(x for r in reports for x in r["latencies_s"])

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 3)

    mem = {k: round(statistics.mean(r["memory"][k] for r in reports), 1) for k in ("uss_mib", "pss_mib", "rss_mib")}
    return {"n_learners": n, "latency_p50_s": pct(0.5), "latency_p95_s": pct(0.95), "questions": len(lat),
            "wall_s": round(wall, 1), "memory_per_learner_mean": mem, "server_memory_peak": peak_server,
            "learners": reports}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--questions", type=int, default=8, help="teacher questions per learner")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "shared_server.json")
    parser.add_argument("--learner", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--barrier", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.learner:
        learner(args.learner, args.questions, args.seed, args.barrier, args.report)
        return 0

    from llmguide.net import free_port, wait_for_http
    from llmguide.rundir import write_json

    began, load_start = time.time(), os.getloadavg()[0]
    arms: dict[str, list[dict[str, Any]]] = {"shared_server": [], "own_model": []}
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cli = Path(sys.executable).with_name("llmguide")
        server = subprocess.Popen([str(cli), "serve", "--model", "smollm2", "--port", str(port), "--n-ctx", "2048"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            if not wait_for_http(f"{url}/models", server, timeout=300, interval=0.5):
                raise RuntimeError("llmguide serve did not come up within 300 s")
            idle = _memory(server.pid, with_children=True)
            for n in args.n:  # arms interleaved per N, so a loaded machine slows them alike
                for arm, spec, pid in (("shared_server", f"openai:smollm2@{url}", server.pid),
                                       ("own_model", "smollm2", None)):
                    row = run_group(spec, n, args.questions, Path(tmp), pid)
                    arms[arm].append(row)
                    print(arm, {k: v for k, v in row.items() if k != "learners"}, flush=True)
        finally:
            server.terminate()
            server.wait(timeout=60)
    summary = {
        "command": "python benchmarks/shared_server.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()}-core CPU, no GPU (shared with other jobs)",
        "load_average_1m": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "env": ENV, "questions_per_learner": args.questions, "n": args.n, "seeds": "learner i: seed i",
        "server_memory_idle": idle,
        "arms": arms,
        "wall_s": round(time.time() - began, 1),
    }
    write_json(args.out, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
