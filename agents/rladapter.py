"""RLAdapter's learner side on Crafter: exports `CrafterSubgoalObs`,
`SubgoalImageExtractor`, `make_crafter_subgoal_env`, `RLAdapterCallback`,
`run_rladapter_config`, `VARIANTS`.

The PPO policy is conditioned on the embedded current subgoal: a Dict
observation {"image": Crafter's 64x64 RGB, "subgoal": the subgoal's sentence
embedding} read by `SubgoalImageExtractor` (a small CNN on the image, an MLP
on the embedding, concatenated). The teacher is reached only through an SB3
callback that asks it every `every` env steps per env and writes the answer
into that env's wrapper (and into the observation the policy acts on next),
so PPO itself is unchanged. An optional bonus for unlocking the achievement
the subgoal names is off by default (the published method used none).

Variants of `run_rladapter_config` (``variant:`` in the YAML): ``plain``
(PPO, same network, subgoal input always zero), ``guide`` (subgoals from the
guide LLM alone), ``rladapter`` (adapter + guide, adapter LoRA-tuned in
stages).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from llmguide.teachers.rladapter import RLAdapterTeacher, unlocked_since
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from llmguide.errors import ConfigError

__all__ = [
    "SUBGOAL_EMBED_DIM",
    "VARIANTS",
    "CrafterSubgoalObs",
    "RLAdapterCallback",
    "SubgoalImageExtractor",
    "make_crafter_subgoal_env",
    "run_rladapter_config",
]

VARIANTS = ("plain", "guide", "rladapter")
#: all-MiniLM-L6-v2's dimension (the default embedding).
SUBGOAL_EMBED_DIM = 384


class CrafterSubgoalObs(gym.Wrapper):
    """Dict observation {"image", "subgoal"} plus an optional subgoal-matching bonus.

    `set_subgoal(text, vector, achievement)` is called by `RLAdapterCallback`
    (through `env_method`, so it works under SubprocVecEnv). The bonus, when
    > 0, is paid once per subgoal when its achievement is unlocked. `info`
    gains `subgoal`, `task_reward`, `subgoal_bonus`, `unlocked`.

    Example:
        >>> from llmguide.envs import make                        # doctest: +SKIP
        >>> env = CrafterSubgoalObs(make("llmguide/Crafter-v0"))   # doctest: +SKIP
        >>> obs, info = env.reset(seed=0); obs["subgoal"].shape    # doctest: +SKIP
        (384,)
    """

    def __init__(self, env: gym.Env, dim: int = SUBGOAL_EMBED_DIM, bonus: float = 0.0) -> None:
        super().__init__(env)
        if bonus < 0:
            raise ConfigError(f"bonus must be >= 0, got {bonus}.")
        self.observation_space = spaces.Dict(
            {"image": env.observation_space, "subgoal": spaces.Box(-1.0, 1.0, (int(dim),), dtype=np.float32)}
        )
        self.bonus = float(bonus)
        self.subgoal: str | None = None
        self.achievement: str | None = None
        self._vec = np.zeros(int(dim), dtype=np.float32)
        self._paid = False
        self._counts: dict[str, int] | None = None

    def set_subgoal(self, text: str | None, vector: Sequence[float] | None, achievement: str | None = None) -> None:
        """Make `text` the current subgoal (None clears it)."""
        self.subgoal, self.achievement, self._paid = text, achievement, False
        if vector is None:
            self._vec = np.zeros_like(self._vec)
        else:
            vec = np.asarray(vector, dtype=np.float32).reshape(-1)
            if vec.shape != self._vec.shape:
                raise ConfigError(f"subgoal vector has {vec.size} dims, the observation expects {self._vec.size}.")
            self._vec = np.clip(vec, -1.0, 1.0)

    def _obs(self, image: Any) -> dict[str, np.ndarray]:
        return {"image": image, "subgoal": self._vec.copy()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._counts = dict(info.get("achievement_counts") or {})
        info["subgoal"] = self.subgoal
        return self._obs(obs), info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        counts = dict(info.get("achievement_counts") or {})
        unlocked = unlocked_since(self._counts, counts)
        self._counts = counts
        paid = 0.0
        if self.bonus > 0 and not self._paid and self.achievement is not None and self.achievement in unlocked:
            paid, self._paid = self.bonus, True
        info.update(subgoal=self.subgoal, task_reward=float(reward), subgoal_bonus=paid, unlocked=unlocked)
        return self._obs(obs), float(reward) + paid, terminated, truncated, info


class SubgoalImageExtractor(BaseFeaturesExtractor):
    """Small CNN on the image (64x64, channels first after SB3's transpose) + MLP on the
    subgoal embedding, concatenated. Without a "subgoal" key it is the CNN alone."""

    def __init__(
        self,
        observation_space: spaces.Dict,
        channels: Sequence[int] = (16, 32, 32),
        image_features: int = 256,
        subgoal_features: int = 64,
    ) -> None:
        import torch
        from torch import nn

        has_subgoal = "subgoal" in observation_space.spaces
        super().__init__(observation_space, int(image_features) + (int(subgoal_features) if has_subgoal else 0))
        image = observation_space["image"]
        c1, c2, c3 = (list(channels) + [channels[-1]] * 3)[:3]
        cnn = nn.Sequential(
            nn.Conv2d(image.shape[0], c1, 8, stride=4), nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2), nn.ReLU(),
            nn.Conv2d(c2, c3, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = cnn(torch.zeros(1, *image.shape)).shape[1]
        self.image_net = nn.Sequential(cnn, nn.Linear(flat, int(image_features)), nn.ReLU())
        self.subgoal_net = None
        if has_subgoal:
            dim = observation_space["subgoal"].shape[0]
            self.subgoal_net = nn.Sequential(nn.Linear(dim, int(subgoal_features)), nn.ReLU())

    def forward(self, observations: dict[str, Any]) -> Any:
        import torch

        feats = self.image_net(observations["image"])
        if self.subgoal_net is None:
            return feats
        return torch.cat([feats, self.subgoal_net(observations["subgoal"])], dim=1)


def make_crafter_subgoal_env(
    env_id: str = "llmguide/Crafter-v0",
    *,
    text: bool = True,
    dim: int = SUBGOAL_EMBED_DIM,
    bonus: float = 0.0,
    env_kwargs: Mapping[str, Any] | None = None,
) -> Callable[[], gym.Env]:
    """A picklable thunk for SB3's `make_vec_env`: Crafter (text view if `text`) + `CrafterSubgoalObs`."""

    def thunk() -> gym.Env:
        from llmguide.envs import make

        return CrafterSubgoalObs(make(env_id, text=text, **dict(env_kwargs or {})), dim=dim, bonus=bonus)

    return thunk


class RLAdapterCallback(BaseCallback):
    """Queries the teacher every `every` env steps per env, starts fine-tune stages every
    `stage_every` env steps (all envs), polls them without waiting, and records
    finished episodes' achievements for the Crafter score.

    Logged under `rladapter/*`: `queries`, `comprehension` (mean since the
    last rollout), `stage` (adapter stage in use), `stages_done`,
    `finetune_running`, `finetune_s_last`, `buffer_records`, `adapter_ms`,
    `guide_ms`, `subgoal_top_share`, `bonus`; and `crafter/score`,
    `crafter/episodes`, `crafter/return_mean` for every variant.
    """

    def __init__(
        self,
        teacher: RLAdapterTeacher | None = None,
        every: int | None = None,
        stage_every: int | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        self.teacher = teacher
        self.every = int(every or (teacher.every if teacher is not None else 0))
        self.stage_every = int(stage_every) if stage_every else 0
        self.episodes: list[dict[str, int]] = []
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.subgoal_log: list[dict[str, Any]] = []
        self.bonus_paid = 0.0
        self._scores: list[float] = []
        self._next_stage = self.stage_every

    def _init_callback(self) -> None:
        n = self.training_env.num_envs
        self._since = [0] * n
        self._events: list[list[str]] = [[] for _ in range(n)]
        self._reward = [0.0] * n
        self._ep_return = [0.0] * n
        self._ep_len = [0] * n
        self._asked = [False] * n

    def _on_step(self) -> bool:
        infos = self.locals.get("infos", ())
        dones = self.locals.get("dones", np.zeros(len(infos), dtype=bool))
        rewards = self.locals.get("rewards", np.zeros(len(infos)))
        for i, info in enumerate(infos):
            task = float(info.get("task_reward", rewards[i]))
            self.bonus_paid += float(info.get("subgoal_bonus", 0.0))
            self._ep_return[i] += task
            self._ep_len[i] += 1
            self._reward[i] += task
            self._events[i].extend(info.get("events") or ())
            self._since[i] += 1
            if dones[i]:
                self.episodes.append(dict(info.get("achievement_counts") or {}))
                self.returns.append(self._ep_return[i])
                self.lengths.append(self._ep_len[i])
                self._ep_return[i], self._ep_len[i] = 0.0, 0
        if self.teacher is None:
            return True
        for i, info in enumerate(infos):
            if self._asked[i] and self._since[i] < self.every:
                continue
            advice = self.teacher.advise(i, info, self._events[i], self._reward[i], step=self.num_timesteps)
            self._asked[i], self._since[i], self._events[i], self._reward[i] = True, 0, [], 0.0
            self.training_env.env_method("set_subgoal", advice.subgoal, advice.embedding, advice.achievement, indices=[i])
            new_obs = self.locals.get("new_obs")
            if isinstance(new_obs, dict) and "subgoal" in new_obs:  # the policy acts on it next step
                new_obs["subgoal"][i] = advice.embedding
            if advice.score is not None:
                self._scores.append(advice.score)
            self.subgoal_log.append(
                {"step": self.num_timesteps, "env": i, "subgoal": advice.subgoal, "score": advice.score,
                 "stage": advice.stage, "analysis": advice.analysis}
            )
        result = self.teacher.poll()
        if result is not None and self.verbose:
            print(f"rladapter: stage {result.stage} {'ready' if result.ok else 'failed'} after {result.seconds:.1f}s")
        if self.stage_every and self.num_timesteps >= self._next_stage:
            self.teacher.start_stage(self.num_timesteps)
            while self._next_stage <= self.num_timesteps:
                self._next_stage += self.stage_every
        return True

    def _on_training_end(self) -> None:
        """Close each env's last record with the behaviour since its subgoal."""
        if self.teacher is None:
            return
        infos = self.locals.get("infos", ())
        for i, info in enumerate(infos):
            if self._asked[i] and self._since[i] > 0:
                self.teacher.close_pending(i, info, self._events[i], self._reward[i])

    def crafter_metrics(self) -> dict[str, Any]:
        """Crafter score and reward over the episodes finished during training."""
        from llmguide.metrics import achievement_success_rates, crafter_score

        rates = achievement_success_rates(self.episodes)
        return {
            "crafter_score": crafter_score(rates) if self.episodes else 0.0,
            "success_rates": rates,
            "episodes": len(self.episodes),
            "reward_mean": float(np.mean(self.returns)) if self.returns else 0.0,
            "reward_std": float(np.std(self.returns)) if self.returns else 0.0,
            "length_mean": float(np.mean(self.lengths)) if self.lengths else 0.0,
        }

    def _on_rollout_end(self) -> None:
        log = self.logger
        if self.episodes:
            m = self.crafter_metrics()
            log.record("crafter/score", m["crafter_score"])
            log.record("crafter/episodes", m["episodes"])
            log.record("crafter/return_mean", m["reward_mean"])
        if self.teacher is None:
            return
        s = self.teacher
        log.record("rladapter/queries", s.queries)
        if self._scores:
            log.record("rladapter/comprehension", float(np.mean(self._scores)))
            self._scores = []
        log.record("rladapter/stage", s.stage)
        log.record("rladapter/stages_done", sum(1 for r in s.stages if r.ok))
        log.record("rladapter/finetune_running", int(s.finetune_running))
        if s.stages:
            log.record("rladapter/finetune_s_last", s.stages[-1].seconds)
        log.record("rladapter/buffer_records", len(s.buffer))
        if s.adapter_ms:
            log.record("rladapter/adapter_ms", float(np.mean(s.adapter_ms[-50:])))
        if s.guide_ms:
            log.record("rladapter/guide_ms", float(np.mean(s.guide_ms[-50:])))
        log.record("rladapter/subgoal_top_share", s.summary()["subgoal_top_share"])
        log.record("rladapter/bonus", self.bonus_paid)


def _teacher_from_config(config: Mapping[str, Any], variant: str, run_dir: Path) -> RLAdapterTeacher | None:
    if variant == "plain":
        return None
    return RLAdapterTeacher(
        adapter=config.get("adapter", "smollm2") if variant == "rladapter" else None,
        llm=config.get("llm", "smollm2"),
        every=int(config.get("every", 100)),
        run_dir=run_dir,
        mode=config.get("mode", "choice"),
        lora_r=int(config.get("lora_r", 8)),
        max_new_tokens=int(config.get("max_new_tokens", 40)),
        temperature=float(config.get("adapter_temperature", 0.7)),
        score_scale=float(config.get("score_scale", 1.0)),
        stage_steps=int(config.get("stage_sft_steps", 20)),
        lr=float(config.get("adapter_lr", 2e-4)),
        batch_size=int(config.get("adapter_batch_size", 4)),
        keep=float(config.get("keep", 0.5)),
        min_records=int(config.get("min_records", 8)),
        seed=int(config.get("seed", 0)),
        n_ctx=int(config.get("n_ctx", 2048)),
        n_threads=config.get("llm_threads", 1),
    )


def run_rladapter_config(config: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """Runner for ``method: rladapter`` (see configs/rladapter_crafter.yaml for the fields).

    Trains PPO on Crafter for `total_timesteps` with the chosen variant and
    returns the Crafter score / reward over the training episodes, the
    teacher's figures (comprehension by stage, fine-tune seconds per stage,
    LLM usage) and timing. Files: `rladapter_buffer.jsonl`, `adapter/stage_K/`,
    `subgoals.jsonl`, `progress.csv`, `policy.zip`.
    """
    import json

    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from llmguide.llm import METER

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    variant = str(config.get("variant", "rladapter"))
    if variant not in VARIANTS:
        raise ConfigError(f"Unknown rladapter variant {variant!r}: use one of {', '.join(VARIANTS)}.")
    seed = int(config.get("seed", 0))
    total = int(config.get("total_timesteps", 20000))
    n_envs = int(config.get("n_envs", 4))
    if config.get("torch_threads", 1):
        torch.set_num_threads(int(config.get("torch_threads", 1)))
    bonus = float(config.get("bonus", 0.0))
    METER.reset()

    teacher = _teacher_from_config(config, variant, run_dir)
    dim = teacher.embedding_dim if teacher is not None else SUBGOAL_EMBED_DIM
    thunk = make_crafter_subgoal_env(
        config.get("env", "llmguide/Crafter-v0"), text=teacher is not None, dim=dim, bonus=bonus,
        env_kwargs=config.get("env_kwargs") or {},
    )
    vec_cls = SubprocVecEnv if config.get("subproc", False) else DummyVecEnv
    venv = make_vec_env(thunk, n_envs=n_envs, seed=seed, vec_env_cls=vec_cls)
    net = dict(config.get("net") or {})
    policy_kwargs = {
        "features_extractor_class": SubgoalImageExtractor,
        "features_extractor_kwargs": {
            "channels": tuple(net.get("channels", (16, 32, 32))),
            "image_features": int(net.get("image_features", 256)),
            "subgoal_features": int(net.get("subgoal_features", 64)),
        },
        "net_arch": list(net.get("net_arch", [64])),
    }
    ppo_kwargs = {"n_steps": 256, "batch_size": 256, "n_epochs": 3, "learning_rate": 3e-4,
                  "ent_coef": 0.01, "gamma": 0.95, "gae_lambda": 0.65}
    ppo_kwargs.update(config.get("ppo") or {})
    model = PPO("MultiInputPolicy", venv, seed=seed, verbose=0, device="cpu", policy_kwargs=policy_kwargs, **ppo_kwargs)
    model.set_logger(configure(str(run_dir), ["csv"]))
    callback = RLAdapterCallback(teacher, stage_every=int(config.get("stage_every", 0) or 0))
    t0 = time.perf_counter()
    try:
        model.learn(total_timesteps=total, callback=callback, progress_bar=bool(config.get("progress", False)))
        train_s = time.perf_counter() - t0
        waited = 0.0
        if teacher is not None and teacher.finetune_running:
            t1 = time.perf_counter()
            teacher.wait(timeout=float(config.get("wait_final_s", 300)))
            waited = time.perf_counter() - t1
    finally:
        if teacher is not None:
            teacher.close()
        venv.close()
    model.save(str(run_dir / "policy.zip"))
    with (run_dir / "subgoals.jsonl").open("w") as fh:
        for row in callback.subgoal_log:
            fh.write(json.dumps(row) + "\n")
    metrics: dict[str, Any] = {
        "method": "rladapter",
        "variant": variant,
        "seed": seed,
        "timesteps": int(model.num_timesteps),
        "n_envs": n_envs,
        "bonus": bonus,
        "train_seconds": train_s,
        "final_wait_seconds": waited,
        "steps_per_second": model.num_timesteps / train_s if train_s > 0 else 0.0,
        "llm": METER.snapshot().as_dict(),
    }
    metrics.update(callback.crafter_metrics())
    if teacher is not None:
        metrics["teacher"] = teacher.summary()
        metrics["every"] = teacher.every
        metrics["finetune_s_per_stage"] = metrics["teacher"]["finetune_s_per_stage"]
        metrics["comprehension_by_stage"] = metrics["teacher"]["comprehension_by_stage"]
    return metrics
