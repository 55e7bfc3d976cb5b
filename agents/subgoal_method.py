"""The `subgoal` method (Words as Beacons, 2024): exports `SubgoalMethod`, `SubgoalConfig`,
`TeacherConfig`, `GuidanceConfig`, `make_teacher`, `teacher_config`, `teacher_label`.

A teacher (LLM, oracle or random control) proposes subgoals on MiniGrid; the
guidance wrapper pays a bounded bonus when the agent reaches one; PPO (or any
SB3 learner) trains on it; the policy is evaluated on the plain env, with no
teacher and no LLM. Everything else is the core's (`llmguide.core`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from llmguide.config import EvalSettings, TrainedConfig
from llmguide.errors import ConfigError, EnvNotFoundError
from llmguide.methods import TrainedMethod

__all__ = [
    "GuidanceConfig", "SubgoalConfig", "SubgoalMethod", "TeacherConfig", "make_teacher", "teacher_config", "teacher_label",
]


class TuningConfig(BaseModel):
    """How a `self_taught` teacher tunes its LoRA stages from the run's hindsight."""

    model_config = ConfigDict(extra="forbid")

    adapter: str = Field("smollm2", description="Model tuned and scored: smollm2, gguf:PATH, hf:DIR.")
    lora_r: PositiveInt = Field(8, description="LoRA rank.")
    stage_examples: PositiveInt = Field(32, description="New hindsight examples that start the next stage.")
    stage_steps: PositiveInt = Field(30, description="SFT steps per stage (on all examples so far).")
    stage_lr: float = Field(1e-3, gt=0, description="SFT learning rate.")
    batch_size: PositiveInt = Field(8, description="SFT batch size.")
    max_stages: NonNegativeInt | None = Field(None, description="Stop after this many stages; 0 = frozen teacher.")
    probe_episodes: NonNegativeInt = Field(6, description="Held-out expert episodes scoring each stage "
                                           "against the oracle (scoring only; 0 = no probe).")
    finetune_nice: NonNegativeInt = Field(10, description="Niceness added to the stage worker (0 where other jobs "
                                          "load the machine: a niced worker starves).")
    wait_for_stages: bool = Field(False, description="The learner waits at a rollout's end for a running stage "
                                  "(benchmarks: what stages do per sample, whatever the host's tuning speed).")


class TeacherConfig(BaseModel):
    """Who proposes subgoals: an LLM (`subgoal`), the `oracle`, or a control: `random`, or
    `first_option` (the first subgoal as the LLM teacher would list it: the position-bias baseline),
    or `self_taught` (the embedded model LoRA-tuned in stages on the run's own hindsight)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["subgoal", "oracle", "random", "first_option", "self_taught"] = Field(
        "subgoal", description="subgoal (an LLM) | oracle | random control | first_option (position-bias control) | "
        "self_taught (tuned on the run's hindsight).")
    kind: Literal["positional", "object", "language"] = Field("object", description="Subgoal kind.")
    llm: str = Field("smollm2", description="LLM spec: smollm2, gguf:PATH, openai:MODEL[@URL].")
    mode: Literal["choice", "free"] = Field("choice", description="choice: among valid subgoals; free: structured + validated.")
    max_queries: PositiveInt | None = Field(2000, description="LLM questions per teacher (per process); None = no cap.")
    retries: NonNegativeInt = Field(2, description="Bounded retries of an invalid answer before the explicit fallback.")
    include_view: bool = Field(False, description="Show the full text view in the prompt.")
    max_tokens: PositiveInt = Field(64, description="Answer token cap.")
    llm_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra `llmguide.llm.load` arguments.")
    option_order: Literal["shuffled", "layout"] = Field("shuffled", description="Order of the options shown to the LLM.")
    tuning: TuningConfig = Field(default_factory=TuningConfig, description="self_taught only: its LoRA stages.")


class GuidanceConfig(BaseModel):
    """How a reached subgoal is paid."""

    model_config = ConfigDict(extra="forbid")

    bonus: float = Field(0.1, ge=0.0, description="Paid once per reached subgoal.")
    max_bonus: float = Field(0.3, ge=0.0, lt=1.0, description="Per-episode cap, below the task reward (1).")
    observe_subgoal: bool = Field(False, description="Dict observation with the current subgoal.")
    asynchronous: bool = Field(False, description="The learner never waits on the LLM: uncached questions are "
                               "answered on a worker thread while training goes on with the subgoal it had "
                               "(none at an episode's start).")
    batched: bool = Field(False, description="The envs' uncached questions of a step are answered in one batch "
                          "by a VecEnv wrapper (repeats asked once) instead of one call per env.")
    batch_concurrency: PositiveInt = Field(1, description="Questions of a batch in flight at once (>1 only helps "
                                           "a server that answers in parallel, e.g. vLLM).")

    @model_validator(mode="after")
    def _bonus_below_cap(self) -> GuidanceConfig:
        if self.bonus > self.max_bonus:
            raise ValueError(f"need bonus <= max_bonus, got {self.bonus} > {self.max_bonus}")
        if self.batched and self.asynchronous:
            raise ValueError("guidance: choose asynchronous or batched, not both")
        return self


class SubgoalConfig(TrainedConfig):
    """`method: subgoal` — PPO on MiniGrid guided by subgoals."""

    default_total_steps: ClassVar[int] = 200_000

    env: str = Field("MiniGrid-DoorKey-8x8-v0", description="A MiniGrid/BabyAI id.")
    n_envs: PositiveInt = Field(8, description="Parallel training envs.")
    teacher: TeacherConfig | None = Field(None, description="None = plain PPO; oracle; random; or an LLM teacher mapping.")
    guidance: GuidanceConfig = Field(default_factory=GuidanceConfig, description="Shaping bonus.")
    env_kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the MiniGrid env.")
    eval: EvalSettings = Field(default_factory=lambda: EvalSettings(gate=0.2), description="Evaluation without the teacher.")

    @field_validator("teacher", mode="before")
    @classmethod
    def _teacher_shorthand(cls, value: Any) -> Any:
        if value is None or value is False or value in ("none", "plain"):
            return None
        if isinstance(value, str):
            return {"type": "subgoal" if value == "llm" else value}
        if isinstance(value, dict) and value.get("type") in ("none", "plain"):
            return None
        if isinstance(value, dict) and value.get("type") == "llm":
            return {**value, "type": "subgoal"}
        return value

    @model_validator(mode="after")
    def _self_taught_never_waits(self) -> SubgoalConfig:
        """A self-taught teacher asks asynchronously unless the config chose how."""
        g = self.guidance
        if self.teacher is not None and self.teacher.type == "self_taught" and not g.batched \
                and "asynchronous" not in g.model_fields_set:
            g.asynchronous = True
        return self

    @field_validator("env")
    @classmethod
    def _minigrid_env(cls, env_id: str) -> str:
        import difflib

        import gymnasium as gym
        import minigrid  # noqa: F401  (registers the ids)

        if env_id not in gym.registry:
            close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise EnvNotFoundError(f"Unknown environment {env_id!r}.{hint} `llmguide envs` lists the supported ones.")
        if "minigrid" not in str(gym.registry[env_id].entry_point):
            raise ValueError(f"the subgoal method needs a MiniGrid/BabyAI env; {env_id!r} is not one")
        return env_id


# -- teachers from config and back ----------------------------------------------------------
def make_teacher(spec: TeacherConfig | dict[str, Any] | str | None, seed: int = 0, cache_path: str | Path | None = None) -> Any:
    """A teacher object from its config (None for plain training); a `Teacher` passes through."""
    from llmguide.teachers import FirstOptionTeacher, OracleTeacher, RandomTeacher, SubgoalTeacher, Teacher

    if isinstance(spec, Teacher):
        return spec
    spec = SubgoalConfig._teacher_shorthand(spec)
    if spec is None:
        return None
    cfg = spec if isinstance(spec, TeacherConfig) else TeacherConfig(**spec)
    if cfg.type == "oracle":
        return OracleTeacher(cfg.kind)
    if cfg.type == "random":
        return RandomTeacher(cfg.kind, seed=seed)
    if cfg.type == "first_option":
        return FirstOptionTeacher(cfg.kind, seed=seed if cfg.option_order == "shuffled" else None)
    if cfg.type == "self_taught":
        from llmguide.teachers.self_taught import SelfTaughtTeacher

        t = cfg.tuning
        return SelfTaughtTeacher(
            cfg.kind, adapter=t.adapter, lora_r=t.lora_r, stage_examples=t.stage_examples, stage_steps=t.stage_steps,
            stage_lr=t.stage_lr, batch_size=t.batch_size, max_stages=t.max_stages, probe_episodes=t.probe_episodes,
            finetune_nice=t.finetune_nice, wait_for_stages=t.wait_for_stages, cache=cache_path or True, seed=seed,
        )
    return SubgoalTeacher(
        cfg.llm, cfg.kind, cache=cache_path or True, mode=cfg.mode, max_queries=cfg.max_queries, retries=cfg.retries,
        include_view=cfg.include_view, max_tokens=cfg.max_tokens, llm_kwargs=cfg.llm_kwargs,
        option_order=cfg.option_order, seed=seed,
    )


def teacher_config(teacher: Any) -> TeacherConfig | None:
    """The config of a teacher object, with every field it was built with (round-trips through YAML)."""
    from llmguide.teachers import FirstOptionTeacher, OracleTeacher, RandomTeacher, SubgoalTeacher

    if teacher is None or isinstance(teacher, TeacherConfig):
        return teacher
    if isinstance(teacher, (str, dict)):
        value = SubgoalConfig._teacher_shorthand(teacher)
        return None if value is None else TeacherConfig(**value)
    if isinstance(teacher, OracleTeacher):
        return TeacherConfig(type="oracle", kind=teacher.kind)
    if isinstance(teacher, RandomTeacher):
        return TeacherConfig(type="random", kind=teacher.kind)
    if isinstance(teacher, FirstOptionTeacher):
        return TeacherConfig(type="first_option", kind=teacher.kind,
                             option_order="layout" if teacher.seed is None else "shuffled")
    from llmguide.teachers.self_taught import SelfTaughtTeacher

    if isinstance(teacher, SelfTaughtTeacher):
        return TeacherConfig(type="self_taught", kind=teacher.kind, tuning=TuningConfig(
            adapter=teacher.adapter_spec, lora_r=teacher.lora_r, stage_examples=teacher.stage_examples,
            stage_steps=teacher.stage_steps, stage_lr=teacher.stage_lr, batch_size=teacher.batch_size,
            max_stages=teacher.max_stages, probe_episodes=teacher.probe_episodes, finetune_nice=teacher.finetune_nice,
            wait_for_stages=teacher.wait_for_stages,
        ))
    if isinstance(teacher, SubgoalTeacher):
        return TeacherConfig(
            type="subgoal", kind=teacher.kind, llm=teacher.llm_spec, mode=teacher.mode, max_queries=teacher.max_queries,
            retries=teacher.retries, include_view=teacher.include_view, max_tokens=teacher.max_tokens,
            llm_kwargs=teacher.llm_kwargs, option_order=teacher.option_order,
        )
    raise ConfigError(f"Cannot describe teacher {teacher!r} as a config; use OracleTeacher, RandomTeacher, "
                      "FirstOptionTeacher, SubgoalTeacher or SelfTaughtTeacher.")


def teacher_label(teacher: Any) -> str:
    """Short label for tables and plots: plain, oracle, random, llm-object..."""
    cfg = teacher_config(teacher)
    if cfg is None:
        return "plain"
    name = "llm" if cfg.type == "subgoal" else cfg.type
    if cfg.type == "self_taught" and cfg.tuning.max_stages == 0:
        name = "self_taught-frozen"
    return name if (cfg.kind == "object" and name != "llm") else f"{name}-{cfg.kind}"


# -- the method -----------------------------------------------------------------------------
class SubgoalMethod(TrainedMethod):
    """Subgoal teachers guiding an SB3 learner on MiniGrid (see the module docstring)."""

    name = "subgoal"
    Config = SubgoalConfig
    #: PPO defaults tuned for MiniGrid on CPU
    DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "PPO": {"n_steps": 128, "batch_size": 64, "n_epochs": 10, "learning_rate": 2.5e-4, "ent_coef": 0.01,
                "gae_lambda": 0.95, "gamma": 0.99},
        "RecurrentPPO": {"n_steps": 128, "batch_size": 64, "n_epochs": 10, "learning_rate": 2.5e-4, "ent_coef": 0.01,
                         "gae_lambda": 0.95, "gamma": 0.99},
        "A2C": {"n_steps": 8, "learning_rate": 7e-4, "ent_coef": 0.01, "gamma": 0.99},
        "DQN": {"buffer_size": 50_000, "learning_starts": 1_000, "exploration_fraction": 0.3,
                "exploration_final_eps": 0.05, "target_update_interval": 1_000, "train_freq": 4, "learning_rate": 5e-4},
    }

    def __init__(self, config: SubgoalConfig, settings: Any, run_dir: Path, objects: dict[str, Any] | None = None) -> None:
        super().__init__(config, settings, run_dir, objects)
        self.config: SubgoalConfig = config
        # an LLM teacher's answers live in the run dir: shared by subproc workers, kept by a resume
        cache = self.run_dir / "teacher_cache.sqlite"
        self.teacher = self.objects.get("teacher") or make_teacher(
            config.teacher, seed=settings.seed,
            cache_path=cache if config.teacher is not None and config.teacher.type in ("subgoal", "self_taught") else None,
        )
        if hasattr(self.teacher, "bind"):  # a teacher that keeps files in the run (hindsight, LoRA stages)
            self.teacher.bind(self.run_dir)
        if getattr(self.teacher, "uses_llm", False) and getattr(self.teacher.cache, "path", "") is None:
            from llmguide.teachers import TeacherCache

            self.teacher.cache = TeacherCache(cache)  # an in-memory cache would not reach subproc workers
        self._metrics_cb: Any = None
        self._stages_cb: Any = None

    def label(self) -> str:
        return self.settings.name or f"subgoal:{teacher_label(self.config.teacher)}"

    def make_env(self, for_eval: bool = False) -> Any:
        from llmguide.agents.guidance import make_minigrid_env

        g = self.config.guidance
        return make_minigrid_env(
            self.config.env, None if for_eval else self.teacher, observe_subgoal=g.observe_subgoal,
            bonus=g.bonus, max_bonus=g.max_bonus, env_kwargs=self.config.env_kwargs, asynchronous=g.asynchronous,
            batched=g.batched and not for_eval, hindsight=None if for_eval else self._hindsight(),
        )

    def _hindsight(self) -> Any:
        """The self-taught teacher's hindsight JSONL (a frozen one only reads the situation)."""
        if not hasattr(self.teacher, "hindsight_path"):
            return None
        return self.teacher.hindsight_path if self.teacher.tuning else True

    def wrap_vec_env(self, venv: Any) -> Any:
        """With ``guidance.batched``, the teacher questions of a step are answered in one batch."""
        if not self.config.guidance.batched or self.teacher is None:
            return venv
        from llmguide.agents.vec_guidance import BatchedTeacherVecEnv

        return BatchedTeacherVecEnv(venv, self.teacher, concurrency=self.config.guidance.batch_concurrency)

    def policy_name(self) -> str:
        dict_obs = self.config.guidance.observe_subgoal
        if self.config.learner == "RecurrentPPO":
            return "MultiInputLstmPolicy" if dict_obs else "MlpLstmPolicy"
        return "MultiInputPolicy" if dict_obs else "MlpPolicy"

    def learner_defaults(self) -> dict[str, Any]:
        return dict(self.DEFAULTS.get(self.config.learner, {}))

    def policy_kwargs(self) -> dict[str, Any]:
        return {"net_arch": [64, 64]}

    def callbacks(self) -> list[Any]:
        if self.teacher is None:
            return []
        from llmguide.agents.guidance import TeacherMetricsCallback

        if self._metrics_cb is None:
            self._metrics_cb = TeacherMetricsCallback()
        out: list[Any] = [self._metrics_cb]
        if hasattr(self.teacher, "start_stage"):
            from llmguide.agents.hindsight import SelfTaughtCallback

            if self._stages_cb is None:
                self._stages_cb = SelfTaughtCallback(self.teacher, self.config.env)
            out.append(self._stages_cb)
        return out

    def state_dict(self) -> dict[str, Any]:
        cb = self._metrics_cb
        out: dict[str, Any] = {}
        if hasattr(self.teacher, "state_dict"):  # tuning stages, examples used
            out["teacher_state"] = self.teacher.state_dict()
        if cb is None:
            return out
        return {**out, "teacher_totals": dict(cb.totals.__dict__), "teacher_episodes": cb.episodes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("teacher_state") and hasattr(self.teacher, "load_state_dict"):
            self.teacher.load_state_dict(state["teacher_state"])
        if not state.get("teacher_totals"):
            return
        cb = self.callbacks()[0]
        for key, value in state["teacher_totals"].items():
            setattr(cb.totals, key, value)
        cb.episodes = int(state.get("teacher_episodes", 0))

    def llm_usage(self) -> dict[str, Any] | None:
        """Teacher questions counted from the episodes (they may run in subprocess workers)."""
        if self._metrics_cb is None:
            return None
        from llmguide.llm import METER

        usage = METER.snapshot().as_dict()
        calls = int(self._metrics_cb.summary()["teacher_calls"])
        return {**usage, "calls": max(int(usage.get("calls", 0)), calls)}

    def extras(self) -> dict[str, Any]:
        out: dict[str, Any] = {"teacher": teacher_label(self.config.teacher), "learner": self.config.learner}
        if self._metrics_cb is not None:
            out["teacher_metrics"] = {**self._metrics_cb.summary(), "calls_curve": self._metrics_cb.calls_curve}
        if hasattr(self.teacher, "summary"):
            out["self_taught"] = self.teacher.summary()
        return out
