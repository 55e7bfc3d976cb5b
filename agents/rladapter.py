"""The `rladapter` method (RLAdapter, Zhang et al., 2023) on Crafter: exports `RLAdapterMethod`,
`RLAdapterConfig`, `NetConfig`, `CrafterSubgoalObs`, `SubgoalImageExtractor`,
`make_crafter_subgoal_env`, `RLAdapterCallback`, `VARIANTS`, `SUBGOAL_EMBED_DIM`.

The PPO policy is conditioned on the embedded current subgoal: a Dict
observation {"image": Crafter's 64x64 RGB, "subgoal": the subgoal's sentence
embedding} read by `SubgoalImageExtractor` (a small CNN on the image, an MLP
on the embedding, concatenated). The teacher is reached only through an SB3
callback that asks it every `every` env steps per env and writes the answer
into that env's wrapper (and into the observation the policy acts on next),
so PPO itself is unchanged. An optional bonus for unlocking the achievement
the subgoal names is off by default (the published method used none).

Variants (``variant:`` in the config): ``plain`` (PPO, same network, subgoal
input always zero), ``guide`` (subgoals from the guide LLM alone),
``frozen`` (adapter + guide, the base adapter never tuned: the control that
isolates fine-tuning), ``rladapter`` (adapter + guide, adapter LoRA-tuned in
stages during the run). The run dir gets ``rladapter_curve.png``: the training
episodes' return with the steps where each tuned stage began serving. The policy is
evaluated on the plain env with a zero subgoal and no LLM. Training, logging,
evaluation, checkpoints and resume are the core's (`llmguide.core`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from llmguide.teachers.rladapter import RLAdapterTeacher, unlocked_since
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
)
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from llmguide.config import EvalSettings, TrainedConfig
from llmguide.errors import ConfigError
from llmguide.methods import TrainedMethod

if TYPE_CHECKING:  # pragma: no cover
    from llmguide.agents.loop import EpisodeRecord

__all__ = [
    "SUBGOAL_EMBED_DIM",
    "VARIANTS",
    "CrafterSubgoalObs",
    "NetConfig",
    "RLAdapterCallback",
    "RLAdapterConfig",
    "RLAdapterMethod",
    "SubgoalImageExtractor",
    "make_crafter_subgoal_env",
    "plot_stage_curve",
    "rolling_curve",
]

VARIANTS = ("plain", "guide", "frozen", "rladapter")
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
    """Queries the teacher every `every` env steps per env (envs due at the same step in one
    batch), starts a fine-tune stage at least `stage_every` env steps (all envs) after the
    last one once the teacher has enough usable examples, polls it without waiting (the
    new weights serve from the step they are found ready), and records finished episodes'
    achievements and end steps for the Crafter score and the learning curve.

    Each query's subgoal is appended to `log_path` (JSONL) as it is given, so an
    interrupted or resumed run keeps every earlier line.

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
        log_path: str | Path | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        self.teacher = teacher
        self.every = int(every or (teacher.every if teacher is not None else 0))
        self.stage_every = int(stage_every) if stage_every else 0
        self.log_path = None if log_path is None else Path(log_path)
        self.episodes: list[dict[str, int]] = []
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.episode_steps: list[int] = []
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
                self.episode_steps.append(int(self.num_timesteps))
                self.returns.append(self._ep_return[i])
                self.lengths.append(self._ep_len[i])
                self._ep_return[i], self._ep_len[i] = 0.0, 0
        if self.teacher is None:
            return True
        due = [(i, info, self._events[i], self._reward[i]) for i, info in enumerate(infos)
               if not self._asked[i] or self._since[i] >= self.every]
        advices = self.teacher.advise_batch(due, step=self.num_timesteps) if due else []
        for (i, _, _, _), advice in zip(due, advices):
            self._asked[i], self._since[i], self._events[i], self._reward[i] = True, 0, [], 0.0
            self.training_env.env_method("set_subgoal", advice.subgoal, advice.embedding, advice.achievement, indices=[i])
            new_obs = self.locals.get("new_obs")
            if isinstance(new_obs, dict) and "subgoal" in new_obs:  # the policy acts on it next step
                new_obs["subgoal"][i] = advice.embedding
            if advice.score is not None:
                self._scores.append(advice.score)
            self._log({"step": self.num_timesteps, "env": i, "subgoal": advice.subgoal, "score": advice.score,
                       "stage": advice.stage, "analysis": advice.analysis})
        result = self.teacher.poll(self.num_timesteps)
        if result is not None and self.verbose:
            print(f"rladapter: stage {result.stage} {'ready' if result.ok else 'failed'} after {result.seconds:.1f}s")
        # A stage starts at the first step past its boundary where the teacher can start one
        # (enough usable examples and new records, none running); the next boundary counts from there.
        if self.stage_every and self.num_timesteps >= self._next_stage and self.teacher.start_stage(self.num_timesteps):
            self._next_stage = self.num_timesteps + self.stage_every
        return True

    def _log(self, row: dict[str, Any]) -> None:
        self.subgoal_log.append(row)
        if self.log_path is not None:
            with self.log_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")

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

    def state_dict(self) -> dict[str, Any]:
        """The training episodes so far and the next stage boundary; a stage still running is
        lost with the process, so a resume starts it again at once."""
        running = self.teacher is not None and self.teacher.finetune_running
        return {"episodes": self.episodes, "returns": self.returns, "lengths": self.lengths,
                "episode_steps": self.episode_steps,
                "bonus_paid": self.bonus_paid, "next_stage": 0 if running else self._next_stage}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.episodes = [dict(e) for e in state.get("episodes", [])]
        self.returns = [float(x) for x in state.get("returns", [])]
        self.lengths = [int(x) for x in state.get("lengths", [])]
        self.episode_steps = [int(x) for x in state.get("episode_steps", [])]
        self.bonus_paid = float(state.get("bonus_paid", 0.0))
        self._next_stage = int(state.get("next_stage", self.stage_every))

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


def rolling_curve(steps: Sequence[int], returns: Sequence[float], window: int = 10) -> tuple[list[int], list[float]]:
    """(end step, mean return of the last `window` episodes) per finished training episode."""
    ys = np.asarray(returns, dtype=float)
    means = [float(ys[max(0, i + 1 - window): i + 1].mean()) for i in range(len(ys))]
    return list(map(int, steps)), means


def plot_stage_curve(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    stages: Mapping[str, Sequence[int]],
    path: str | Path,
    title: str = "",
    ylabel: str = "episode return (rolling mean of 10)",
) -> Path:
    """Learning curves with a dotted vertical line, in the curve's colour, at each step where a
    tuned adapter stage began serving queries (`stages`: label -> steps)."""
    from llmguide.plots import plot_curves

    return plot_curves(curves, path, title, ylabel, markers=stages)


# -- the method ---------------------------------------------------------------------------
class NetConfig(BaseModel):
    """The policy network: `SubgoalImageExtractor` plus the policy/value heads."""

    model_config = ConfigDict(extra="forbid")

    channels: list[PositiveInt] = Field([16, 32, 32], min_length=1, max_length=3, description="CNN channels (up to 3 conv layers).")
    image_features: PositiveInt = Field(256, description="Image features after the CNN.")
    subgoal_features: PositiveInt = Field(64, description="Features of the subgoal embedding.")
    net_arch: list[PositiveInt] = Field([64], description="Hidden layers of the policy and value heads.")


class RLAdapterConfig(TrainedConfig):
    """`method: rladapter` — PPO on Crafter conditioned on subgoals from a guide LLM, read through a LoRA-tuned adapter LM."""

    default_total_steps: ClassVar[int] = 20_000

    env: str = Field("llmguide/Crafter-v0", description="A Crafter id (the text view feeds the teacher).")
    env_kwargs: dict[str, Any] = Field(default_factory=dict, description="CrafterEnv kwargs, e.g. {area: [32, 32]} for a cheaper world.")
    variant: Literal["plain", "guide", "frozen", "rladapter"] = Field(
        "rladapter", description="plain: PPO, subgoal input zero | guide: guide LLM alone | "
        "frozen: base adapter + guide, never tuned | rladapter: adapter + guide, adapter tuned in stages."
    )
    llm: str = Field("smollm2", description="The guide: smollm2, gguf:PATH, openai:MODEL[@BASE_URL].")
    llm_threads: PositiveInt | None = Field(1, description="llama.cpp threads of an in-process guide.")
    n_ctx: PositiveInt = Field(2048, description="Context length of an in-process guide.")
    mode: Literal["choice", "free"] = Field("choice", description="choice: constrained among the 22 achievement subgoals | free: structured free text.")
    adapter: str = Field("smollm2", description="Adapter LM (variants frozen, rladapter): smollm2, gguf:PATH, hf:DIR.")
    every: PositiveInt = Field(100, description="Env steps per env between guidance queries (the paper: ~100).")
    stage_every: NonNegativeInt = Field(
        5000, description="Least env steps between the starts of two fine-tune stages (0: never fine-tune)."
    )
    min_records: PositiveInt = Field(8, description="Complete buffer records needed before a stage starts.")
    min_examples: PositiveInt = Field(64, description="SFT examples (after the `keep` filter) needed before a stage starts.")
    min_new_records: NonNegativeInt = Field(16, description="New buffer records since the last stage needed before the next.")
    finetune_nice: NonNegativeInt = Field(
        10, description="Niceness added to the fine-tune worker (0 where other jobs load the machine: a niced worker starves)."
    )
    stage_sft_steps: PositiveInt = Field(16, description="SFT optimizer steps per stage (steps x batch ~ min_examples: one pass).")
    adapter_lr: PositiveFloat = Field(2e-4, description="SFT learning rate of the adapter's LoRA.")
    adapter_batch_size: PositiveInt = Field(
        4, description="SFT batch size (the worker peaks at ~5.5 GB RSS on a 64-example stage: mind other jobs' memory)."
    )
    keep: float = Field(0.5, gt=0.0, le=1.0, description="SFT on the top fraction of records by outcome.")
    lora_r: PositiveInt = Field(8, description="LoRA rank (the paper: 64 on a 7B model).")
    max_new_tokens: PositiveInt = Field(40, description="Length cap of the adapter's analysis.")
    adapter_temperature: NonNegativeFloat = Field(0.7, description="Sampling temperature of the adapter (0: greedy).")
    score_scale: PositiveFloat = Field(1.0, description="comprehension = sigmoid(score_scale * cosine similarity).")
    bonus: NonNegativeFloat = Field(0.0, description="Reward when the subgoal's achievement is unlocked (off, as in the paper).")
    wait_final_s: NonNegativeFloat = Field(300.0, description="At the end of training, wait this long for a still-running stage.")
    net: NetConfig = Field(default_factory=NetConfig, description="Policy network.")
    eval: EvalSettings = Field(default_factory=lambda: EvalSettings(every=5_000, episodes=8),
                               description="Evaluation on the plain env (zero subgoal, no LLM).")
    checkpoint_every: NonNegativeInt = Field(5_000, description="Env steps between checkpoints (0 = only at the end and on Ctrl-C).")

    @field_validator("env")
    @classmethod
    def _crafter_env(cls, env_id: str) -> str:
        from llmguide.envs.registry import family_of

        if family_of(env_id) != "crafter":
            raise ValueError(f"the rladapter method needs a Crafter env (llmguide/Crafter-v0); {env_id!r} is not one")
        return env_id


class RLAdapterMethod(TrainedMethod):
    """RLAdapter's teacher guiding PPO on Crafter (see the module docstring).

    Live objects may stand in for config keys (``prepare(raw, objects=...)``):
    ``llm`` (a LangChain chat model as the guide), ``adapter`` (an `AdapterLM`),
    ``embeddings`` (a LangChain `Embeddings` of dimension `SUBGOAL_EMBED_DIM`).
    """

    name = "rladapter"
    Config = RLAdapterConfig
    policy = "MultiInputPolicy"
    #: PPO defaults for Crafter on CPU
    PPO_DEFAULTS: ClassVar[dict[str, Any]] = {
        "n_steps": 256, "batch_size": 256, "n_epochs": 3, "learning_rate": 3e-4,
        "ent_coef": 0.01, "gamma": 0.95, "gae_lambda": 0.65,
    }
    #: usage-meter counters summed over the segments of a resumed run
    _USAGE_SUMS: ClassVar[tuple[str, ...]] = (
        "calls", "cache_hits", "prompt_tokens", "completion_tokens", "errors", "retries", "fallbacks",
    )

    def __init__(self, config: RLAdapterConfig, settings: Any, run_dir: Path, objects: dict[str, Any] | None = None) -> None:
        super().__init__(config, settings, run_dir, objects)
        self.config: RLAdapterConfig = config
        self._teacher: RLAdapterTeacher | None = None
        self._callback: RLAdapterCallback | None = None
        self._usage_before: dict[str, Any] = {}
        self.final_wait_s = 0.0

    # -- what it builds (lazily: `llmguide eval` builds the method and never needs a teacher) --
    def make_teacher(self) -> RLAdapterTeacher:
        """The teacher from the config; its buffer and adapter stages live in the run dir."""
        c, given = self.config, self.objects
        return RLAdapterTeacher(
            adapter=(given.get("adapter") or c.adapter) if c.variant in ("frozen", "rladapter") else None,
            llm=given.get("llm") or c.llm, embeddings=given.get("embeddings"), every=c.every, run_dir=self.run_dir,
            mode=c.mode, lora_r=c.lora_r, max_new_tokens=c.max_new_tokens, temperature=c.adapter_temperature,
            score_scale=c.score_scale, stage_steps=c.stage_sft_steps, lr=c.adapter_lr, batch_size=c.adapter_batch_size,
            keep=c.keep, min_records=c.min_records, min_examples=c.min_examples, min_new_records=c.min_new_records,
            worker_nice=c.finetune_nice, seed=self.settings.seed, n_ctx=c.n_ctx, n_threads=c.llm_threads,
        )

    @property
    def teacher(self) -> RLAdapterTeacher | None:
        if self.config.variant == "plain":
            return None
        if self._teacher is None:
            self._teacher = self.make_teacher()
        return self._teacher

    @property
    def callback(self) -> RLAdapterCallback:
        if self._callback is None:
            stage_every = self.config.stage_every if self.config.variant == "rladapter" else 0
            self._callback = RLAdapterCallback(self.teacher, stage_every=stage_every,
                                               log_path=self.run_dir / "subgoals.jsonl")
        return self._callback

    def label(self) -> str:
        return self.settings.name or f"rladapter:{self.config.variant}"

    def make_env(self, for_eval: bool = False) -> Callable[[], gym.Env]:
        """Training: the text view (for the teacher) + the subgoal slot; evaluation: the bare env
        with the same observation space, its subgoal left at zero (nothing sets it)."""
        c = self.config
        guided = c.variant != "plain" and not for_eval
        return make_crafter_subgoal_env(c.env, text=guided, dim=SUBGOAL_EMBED_DIM, bonus=c.bonus if guided else 0.0,
                                        env_kwargs=c.env_kwargs)

    def policy_name(self) -> str:
        return "MultiInputLstmPolicy" if self.config.learner == "RecurrentPPO" else self.policy

    def learner_defaults(self) -> dict[str, Any]:
        return dict(self.PPO_DEFAULTS) if self.config.learner in ("PPO", "RecurrentPPO") else {}

    def policy_kwargs(self) -> dict[str, Any]:
        n = self.config.net
        return {
            "features_extractor_class": SubgoalImageExtractor,
            "features_extractor_kwargs": {"channels": tuple(n.channels), "image_features": n.image_features,
                                          "subgoal_features": n.subgoal_features},
            "net_arch": list(n.net_arch),
        }

    def callbacks(self) -> list[Any]:
        return [self.callback]

    def after_training(self) -> None:
        """Give a stage still fine-tuning `wait_final_s` to finish, so its weights and figures count."""
        teacher = self._teacher
        if teacher is not None and teacher.finetune_running:
            start = time.perf_counter()
            teacher.wait(timeout=self.config.wait_final_s)
            self.final_wait_s = time.perf_counter() - start
        cb = self._callback
        if cb is not None and cb.episode_steps:
            ready = [r["ready_step"] for r in teacher.stage_table()[1:]] if teacher is not None and teacher.has_adapter else []
            plot_stage_curve({self.label(): rolling_curve(cb.episode_steps, cb.returns)},
                             {self.label(): [x for x in ready if x]}, self.run_dir / "rladapter_curve.png",
                             title=f"Crafter, {self.config.variant}: training return, tuned stages marked")

    def close(self) -> None:
        """Stop the background fine-tune process, if one still runs."""
        if self._teacher is not None:
            self._teacher.close()

    # -- what an episode means: Crafter's achievements ----------------------------------------
    def success(self, terminated: bool, truncated: bool, episode_return: float, info: dict[str, Any]) -> bool:
        """An episode succeeds when it unlocked at least one achievement (Crafter has no goal)."""
        return any(v > 0 for v in (info.get("achievement_counts") or {}).values())

    def episode_extra(self, info: dict[str, Any]) -> dict[str, Any]:
        return {"achievements": dict(info.get("achievement_counts") or {})}

    def score(self, records: list[EpisodeRecord]) -> float | None:
        """The Crafter score (%) over the evaluation episodes."""
        from llmguide.metrics import achievement_success_rates, crafter_score

        if not records:
            return None
        return crafter_score(achievement_success_rates(r.extra.get("achievements", {}) for r in records))

    # -- run bookkeeping ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"llm_usage": self.llm_usage()}
        if self._callback is not None:
            state["callback"] = self._callback.state_dict()
        if self._teacher is not None:
            state["teacher"] = self._teacher.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._usage_before = dict(state.get("llm_usage") or {})
        if state.get("callback"):
            self.callback.load_state_dict(state["callback"])
        if state.get("teacher") and self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])

    def llm_usage(self) -> dict[str, Any] | None:
        """This process's meter plus the segments before a resume (the meter restarts with the process)."""
        from llmguide.llm import METER

        usage = METER.snapshot().as_dict()
        for key in self._USAGE_SUMS:
            usage[key] = int(usage.get(key, 0)) + int(self._usage_before.get(key, 0))
        return usage

    def extras(self) -> dict[str, Any]:
        c = self.config
        out: dict[str, Any] = {"variant": c.variant, "learner": c.learner, "bonus": c.bonus}
        if self._callback is not None:
            out["train_crafter"] = self._callback.crafter_metrics()  # Crafter's protocol: training episodes
            out["train_curve"] = {"steps": self._callback.episode_steps, "returns": self._callback.returns}
        if self._teacher is not None:
            summary = self._teacher.summary()
            out.update(
                teacher=summary, every=c.every, final_wait_s=self.final_wait_s,
                comprehension_by_stage=summary["comprehension_by_stage"],
                finetune_s_per_stage=summary["finetune_s_per_stage"],
                stages=summary["stages"],
            )
        return out
