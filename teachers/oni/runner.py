"""Train PPO on NetHack with ONI intrinsic rewards: ``train_oni`` and the config runner ``run_oni_config``.

Exports ``ONIConfig``, ``make_nle_vec_env``, ``train_oni``, ``run_oni_config``.

``llmguide run configs/oni_nethack.yaml`` calls ``run_oni_config``. When the
config gives no ``annotator_url``, the run starts the annotator as its own
process (``process.start_annotator``, label store in the run dir) and stops
it at the end, whatever happens. ``reward_model: none`` trains with the
extrinsic reward only (the baseline), with no annotator at all.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from llmguide.errors import ConfigError

__all__ = ["ONIConfig", "make_nle_env", "make_nle_vec_env", "run_oni_config", "train_oni"]


#: keys `llmguide run` adds or every config may carry, not ONI settings
_RUN_KEYS = {"method", "name", "description", "progress_bar", "resume"}


@dataclass
class ONIConfig:
    """One ONI training run (every field is a key of configs/oni_nethack.yaml)."""

    env: str = "NetHackScore-v0"  #: any NLE task id
    reward_model: str = "hash"  #: hash | classifier | ranking | none (extrinsic only)
    timesteps: int = 20_000  #: PPO env steps
    seed: int = 0
    n_envs: int = 4
    max_episode_steps: int = 1000  #: NLE episode cap (CPU-sized)
    coef: float = 0.1  #: intrinsic reward coefficient
    beta: float = 0.5  #: count decay exponent, reward / N^beta
    count_scope: str = "episode"  #: episode | global
    llm: str = "smollm2"  #: the annotator's LLM spec (when the run starts it)
    annotator_url: str | None = None  #: use a running annotator instead of starting one
    annotator_nice: int = 5  #: CPU niceness of the started annotator (learner keeps priority)
    annotator_threads: int | None = 1  #: llama.cpp threads of the started annotator
    annotator_cpus: list[int] | None = None  #: pin the started annotator to these CPU ids (None: no pinning)
    torch_threads: int = 1  #: torch intra-op threads of the learner
    batch_size: int = 8  #: captions per LLM call
    prefs_per_batch: int = 2  #: pairwise preferences per LLM call (ranking model)
    queue_size: int = 4096
    eval_episodes: int = 4
    ppo: dict[str, Any] = field(default_factory=lambda: {
        "n_steps": 128, "batch_size": 256, "n_epochs": 4, "learning_rate": 3e-4, "ent_coef": 0.01, "gamma": 0.99,
    })

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> ONIConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(config) - known - _RUN_KEYS
        if unknown:
            raise ConfigError(f"Unknown ONI config keys: {', '.join(sorted(unknown))}. Known: {', '.join(sorted(known))}.")
        cfg = cls(**{k: v for k, v in config.items() if k in known})
        if isinstance(cfg.annotator_cpus, (str, int)):  # "0,1" or 1
            cfg.annotator_cpus = [int(c) for c in str(cfg.annotator_cpus).split(",") if c.strip()]
        if cfg.reward_model not in ("hash", "classifier", "ranking", "none"):
            raise ConfigError(f"reward_model must be hash, classifier, ranking or none, not {cfg.reward_model!r}.")
        return cfg


def make_nle_env(env_id: str, max_episode_steps: int = 1000) -> Any:
    """One NLE env reduced to what the policy reads (glyph crop, blstats, message)."""
    import gymnasium as gym
    import nle  # noqa: F401  (registers the NetHack ids)
    from llmguide.teachers.oni.wrapper import NLEObsWrapper

    try:
        env = gym.make(env_id, observation_keys=("glyphs", "blstats", "message"), max_episode_steps=max_episode_steps,
                       fix_moon_phase=True)
    except gym.error.Error as err:
        from llmguide.errors import EnvNotFoundError

        raise EnvNotFoundError(f"{env_id!r} is not an NLE task ({err}); try NetHackScore-v0 or NetHackStaircase-v0.") from None
    return NLEObsWrapper(env)


def make_nle_vec_env(env_id: str, n_envs: int, seed: int, max_episode_steps: int = 1000) -> Any:
    """DummyVecEnv of NLE envs under a VecMonitor (whose returns are extrinsic)."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

    venv = DummyVecEnv([lambda: make_nle_env(env_id, max_episode_steps) for _ in range(n_envs)])
    venv.seed(seed)
    return VecMonitor(venv)


def train_oni(cfg: ONIConfig, run_dir: str | Path | None = None, *, progress: bool = False) -> dict[str, Any]:
    """Train PPO (+ ONI unless ``reward_model == "none"``); returns the run's metrics."""
    import torch
    from llmguide.agents.loop import PolicyAgent, run_episodes, summarize
    from llmguide.teachers.oni.client import AnnotatorClient
    from llmguide.teachers.oni.process import start_annotator
    from llmguide.teachers.oni.reward import make_reward_model
    from llmguide.teachers.oni.wrapper import ONILogCallback, ONIRewardWrapper, _policy_kwargs
    from stable_baselines3 import PPO

    run_dir = Path(run_dir) if run_dir is not None else None
    torch.set_num_threads(max(1, int(cfg.torch_threads)))
    venv = make_nle_vec_env(cfg.env, cfg.n_envs, cfg.seed, cfg.max_episode_steps)
    proc = client = model = None
    wrapper = None
    metrics: dict[str, Any] = {"config": asdict(cfg)}
    try:
        if cfg.reward_model != "none":
            url = cfg.annotator_url
            if url is None:
                db = (run_dir / "oni_labels.sqlite") if run_dir else None
                proc = start_annotator(cfg.llm, db, nice=cfg.annotator_nice, cpus=cfg.annotator_cpus,
                                       threads=cfg.annotator_threads,
                                       batch_size=cfg.batch_size, prefs_per_batch=cfg.prefs_per_batch,
                                       queue_size=cfg.queue_size)
                url = proc.url
                metrics["annotator_pid"] = proc.pid
                metrics["annotator_cpus"] = proc.cpus
            client = AnnotatorClient(url)
            model = make_reward_model(cfg.reward_model)
            venv = wrapper = ONIRewardWrapper(venv, model, client, coef=cfg.coef, beta=cfg.beta, count_scope=cfg.count_scope)
        ppo = PPO("MultiInputPolicy", venv, seed=cfg.seed, verbose=0, device="cpu", policy_kwargs=_policy_kwargs(),
                  tensorboard_log=str(run_dir / "tb") if run_dir else None, **cfg.ppo)
        callbacks = [ONILogCallback(wrapper)] if wrapper is not None else []
        start = time.perf_counter()
        ppo.learn(cfg.timesteps, callback=callbacks, progress_bar=progress)
        train_s = time.perf_counter() - start
        episodes = [e["r"] for e in ppo.ep_info_buffer]
        metrics.update(
            train_s=train_s,
            steps_per_s=cfg.timesteps / train_s,
            train_episodes=len(episodes),
            train_return_mean=float(np.mean(episodes)) if episodes else 0.0,
        )
        if wrapper is not None:
            client.flush(5)  # a short run may end before the client's first send: count it in (<= 5 s)
            metrics["oni"] = wrapper.stats()
            client_stats = client.stats()
            metrics["client"] = client_stats
            # learner_wait_s: time the env loop was blocked on the annotator (no blocking call is left on
            # that path: ~0); client_overhead_s: time inside submit/drain (CPU cost, not waiting)
            metrics["learner_wait_s"] = float(client_stats["wait_s"])
            metrics["client_overhead_s"] = float(client_stats["client_overhead_s"])
            metrics["client_overhead_frac"] = metrics["client_overhead_s"] / train_s
            metrics["wrapper_overhead_frac"] = float(metrics["oni"]["overhead_s"]) / train_s
        if proc is not None or cfg.annotator_url:
            import httpx

            try:
                metrics["annotator"] = httpx.get(f"{client.url}/stats", timeout=5).json()
            except httpx.HTTPError as err:
                metrics["annotator"] = {"error": str(err)}
        if cfg.eval_episodes:
            env = make_nle_env(cfg.env, cfg.max_episode_steps)
            records = run_episodes(PolicyAgent(ppo, deterministic=False), env, cfg.eval_episodes, seed=10_000 + cfg.seed,
                                   progress=progress, desc="eval")
            env.close()
            metrics["eval"] = summarize(records)
        if run_dir is not None:
            ppo.save(run_dir / "ppo.zip")
    finally:
        if client is not None:
            client.close()
        if model is not None:
            model.close()
        if proc is not None:
            proc.stop()
        venv.close()
    return metrics


def run_oni_config(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Runner for ``method: oni`` (see configs/oni_nethack.yaml)."""
    cfg = ONIConfig.from_dict(config)
    metrics = train_oni(cfg, run_dir, progress=bool(config.get("progress_bar", False)))
    summary = {
        "env": cfg.env,
        "reward_model": cfg.reward_model,
        "timesteps": cfg.timesteps,
        "steps_per_s": metrics["steps_per_s"],
        "train_return_mean": metrics["train_return_mean"],
        "eval_return_mean": metrics.get("eval", {}).get("return_mean"),
        "learner_wait_s": metrics.get("learner_wait_s", 0.0),
        "client_overhead_s": metrics.get("client_overhead_s", 0.0),
        "client_overhead_frac": metrics.get("client_overhead_frac", 0.0),
        "labels": metrics.get("annotator", {}).get("labels"),
        "labels_per_s": metrics.get("annotator", {}).get("labels_per_s"),
        "dedup_rate": metrics.get("annotator", {}).get("dedup_rate"),
    }
    return {**summary, "details": metrics}
