"""Compose env + teacher + SB3 learner into one run: exports `Experiment`, `Result`,
`make_teacher`, `run_subgoal_config`, `evaluate_run_dir`, `LEARNERS`.

    >>> from llmguide import Experiment
    >>> from llmguide.teachers import SubgoalTeacher
    >>> exp = Experiment(env="MiniGrid-DoorKey-8x8-v0", teacher=SubgoalTeacher(llm="smollm2", kind="object"),
    ...                  learner="PPO", total_steps=200_000, seed=0)      # doctest: +SKIP
    >>> result = exp.run()                                               # doctest: +SKIP
    >>> result.evaluate(episodes=100)                                    # doctest: +SKIP

A run dir holds `config.yaml`, `progress.csv` + TensorBoard events (SB3's
logger), `evals.csv` (success without the teacher, every `eval.every`
steps), `checkpoints/` (model + step counter + eval history), `model.zip`,
`learning_curve.png` and `metrics.json`. The teacher is used only while
training; evaluation runs the policy on the plain env.
"""

from __future__ import annotations

import copy
import csv
import difflib
import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmguide.errors import ConfigError, EnvNotFoundError, MissingDependencyError
from llmguide.rundir import make_run_dir, read_json, write_json, write_yaml

__all__ = [
    "LEARNERS",
    "Experiment",
    "Result",
    "evaluate_run_dir",
    "make_teacher",
    "run_subgoal_config",
    "steps_to_target",
]

#: learner name -> (module, class, default hyperparameters tuned for MiniGrid on CPU)
LEARNERS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "PPO": (
        "stable_baselines3",
        "PPO",
        {"n_steps": 128, "batch_size": 64, "n_epochs": 10, "learning_rate": 2.5e-4, "ent_coef": 0.01,
         "gae_lambda": 0.95, "gamma": 0.99},
    ),
    "A2C": ("stable_baselines3", "A2C", {"n_steps": 8, "learning_rate": 7e-4, "ent_coef": 0.01, "gamma": 0.99}),
    "DQN": (
        "stable_baselines3",
        "DQN",
        {
            "buffer_size": 50_000,
            "learning_starts": 1_000,
            "exploration_fraction": 0.3,
            "exploration_final_eps": 0.05,
            "target_update_interval": 1_000,
            "train_freq": 4,
            "learning_rate": 5e-4,
        },
    ),
    "RecurrentPPO": (
        "sb3_contrib",
        "RecurrentPPO",
        {"n_steps": 128, "batch_size": 64, "n_epochs": 10, "learning_rate": 2.5e-4, "ent_coef": 0.01,
         "gae_lambda": 0.95, "gamma": 0.99},
    ),
}

_CONFIG_KEYS = {
    "method", "env", "seed", "learner", "total_steps", "n_envs", "vec_env", "teacher", "guidance",
    "learner_kwargs", "policy_kwargs", "eval", "checkpoint_every", "compare", "env_kwargs",
    "progress_bar", "resume", "name", "description",
}
_GUIDANCE_KEYS = {"bonus", "max_bonus", "observe_subgoal"}
_EVAL_KEYS = {"every", "episodes", "deterministic", "target", "window", "stop_at_target", "n_envs", "gate"}


# -- teachers from config -----------------------------------------------------
def make_teacher(spec: Any, seed: int = 0, cache_path: str | Path | None = None) -> Any:
    """A teacher from a config value: None/"none"/"plain", "oracle", "random",
    "llm" / "subgoal", or a mapping {type, kind, llm, mode, max_queries, retries}.
    A `Teacher` instance passes through."""
    from llmguide.teachers import OracleTeacher, RandomTeacher, SubgoalTeacher, Teacher

    if isinstance(spec, Teacher):
        return spec
    if spec is None or spec is False:
        return None
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"teacher must be a name or a mapping, got {spec!r}.")
    spec = dict(spec)
    kind_ = str(spec.pop("type", "subgoal")).lower()
    kind = spec.pop("kind", "object")
    if kind_ in ("none", "plain"):
        return None
    if kind_ == "oracle":
        _no_extra(spec, "oracle teacher")
        return OracleTeacher(kind)
    if kind_ == "random":
        _no_extra(spec, "random teacher")
        return RandomTeacher(kind, seed=seed)
    if kind_ in ("subgoal", "llm"):
        allowed = {"llm", "mode", "max_queries", "retries", "include_view", "max_tokens", "llm_kwargs", "option_order"}
        bad = set(spec) - allowed
        if bad:
            raise ConfigError(f"Unknown teacher option(s) {sorted(bad)}; allowed: {sorted(allowed)}.")
        return SubgoalTeacher(spec.pop("llm", "smollm2"), kind, cache=cache_path or True, **spec)
    raise ConfigError(f"Unknown teacher type {kind_!r}: use none, oracle, random or subgoal (an LLM).")


def _no_extra(spec: dict[str, Any], what: str) -> None:
    if spec:
        raise ConfigError(f"Unknown option(s) {sorted(spec)} for the {what}.")


def _teacher_spec(teacher: Any) -> Any:
    """The config form of a teacher (for config.yaml)."""
    from llmguide.teachers import OracleTeacher, RandomTeacher, SubgoalTeacher

    if teacher is None or isinstance(teacher, (str, dict)):
        return teacher
    if isinstance(teacher, OracleTeacher):
        return {"type": "oracle", "kind": teacher.kind}
    if isinstance(teacher, RandomTeacher):
        return {"type": "random", "kind": teacher.kind}
    if isinstance(teacher, SubgoalTeacher):
        return {
            "type": "subgoal", "llm": teacher.llm_spec, "kind": teacher.kind, "mode": teacher.mode,
            "max_queries": teacher.max_queries,
        }
    return {"type": type(teacher).__name__}


def teacher_label(spec: Any) -> str:
    """Short label for tables and plots: plain, oracle, random, llm-object..."""
    spec = _teacher_spec(spec)
    if spec is None:
        return "plain"
    if isinstance(spec, str):
        return spec
    t = str(spec.get("type", "subgoal"))
    if t in ("subgoal", "llm"):
        return f"llm-{spec.get('kind', 'object')}"
    return t if spec.get("kind", "object") == "object" else f"{t}-{spec.get('kind')}"


# -- checks -----------------------------------------------------------------------
def _check_env_id(env_id: str) -> None:
    import gymnasium as gym
    import minigrid  # noqa: F401  (registers the ids)

    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise EnvNotFoundError(f"Unknown environment {env_id!r}.{hint} `llmguide envs` lists the supported ones.")
    entry = str(gym.registry[env_id].entry_point)
    if "minigrid" not in entry:
        raise ConfigError(f"The subgoal method needs a MiniGrid/BabyAI env; {env_id!r} is not one.")


def _learner_class(name: str) -> tuple[type, dict[str, Any]]:
    if name not in LEARNERS:
        close = difflib.get_close_matches(name, list(LEARNERS), n=2, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"Unknown learner {name!r}.{hint} Known learners: {', '.join(LEARNERS)}.")
    module, cls, defaults = LEARNERS[name]
    try:
        return getattr(importlib.import_module(module), cls), dict(defaults)
    except ImportError as err:  # pragma: no cover - both are dependencies
        raise MissingDependencyError(f"Learner {name} needs the `{module}` package ({err}).") from err


def steps_to_target(history: list[dict[str, Any]], target: float = 0.9, window: int = 2) -> int | None:
    """First step at which the mean success of the last `window` evaluations (without the
    teacher) reaches `target`; rows that were not evaluated never count as reaching it."""
    for i in range(len(history)):
        recent = history[max(0, i - window + 1) : i + 1]
        if len(recent) < window or not all(e.get("evaluated", True) for e in recent):
            continue
        if sum(e["success_rate"] for e in recent) / window >= target - 1e-9:  # (0.85 + 0.95) / 2 is 0.8999...
            return int(history[i]["steps"])
    return None


# -- callbacks ------------------------------------------------------------------
def _callbacks() -> Any:
    """Callback classes built on first use (SB3 import stays out of `import llmguide`)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class SuccessEval(BaseCallback):
        """Every `every` steps: success rate of the policy on the plain env (no teacher)."""

        def __init__(self, exp: Experiment, run_dir: Path, history: list[dict[str, Any]]) -> None:
            super().__init__()
            self.exp, self.run_dir, self.history = exp, run_dir, history
            self.next_at = (history[-1]["steps"] if history else 0) + exp.eval_every
            self.eval_seconds = 0.0
            self.reached: int | None = steps_to_target(history, exp.target, exp.eval_window)

        def _on_step(self) -> bool:
            if self.exp.eval_every <= 0 or self.num_timesteps < self.next_at:
                return True
            self.next_at = self.num_timesteps + self.exp.eval_every
            self.evaluate_now()
            return not (self.exp.stop_at_target and self.reached is not None)

        def evaluate_now(self, force: bool = False) -> dict[str, Any]:
            start = time.perf_counter()
            buf = list(self.model.ep_success_buffer or [])
            train = float(sum(buf) / len(buf)) if buf else 0.0
            row: dict[str, Any] = {"steps": int(self.num_timesteps), "train_success_rate": train}
            if force or train >= self.exp.eval_gate:
                row.update(self.exp._evaluate(self.model, self.exp.eval_episodes, offset=len(self.history)), evaluated=True)
            else:  # not worth 20 timed-out episodes: report the training figure, marked as such
                row.update(success_rate=train, mean_return=None, mean_length=None, evaluated=False)
            self.eval_seconds += time.perf_counter() - start
            self.history.append(row)
            self.logger.record("eval/success_rate", row["success_rate"])
            self.logger.record("eval/mean_length", row["mean_length"])
            if self.reached is None:
                self.reached = steps_to_target(self.history, self.exp.target, self.exp.eval_window)
            _write_evals(self.run_dir / "evals.csv", self.history)
            return row

    class Checkpointer(BaseCallback):
        """Saves model + step counter + eval history every `every` steps (and on demand)."""

        def __init__(self, exp: Experiment, run_dir: Path, history: list[dict[str, Any]], metrics_cb: Any) -> None:
            super().__init__()
            self.exp, self.dir, self.history, self.metrics_cb = exp, run_dir / "checkpoints", history, metrics_cb
            self.last = 0

        def _on_step(self) -> bool:
            if self.exp.checkpoint_every > 0 and self.num_timesteps - self.last >= self.exp.checkpoint_every:
                self.save()
            return True

        def save(self) -> Path:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.model.save(self.dir / "model.zip")
            totals = self.metrics_cb.totals.__dict__ if self.metrics_cb is not None else None
            episodes = self.metrics_cb.episodes if self.metrics_cb is not None else 0
            write_json(
                self.dir / "state.json",
                {"num_timesteps": int(self.model.num_timesteps), "evals": self.history, "teacher_totals": totals, "episodes": episodes},
            )
            self.last = self.model.num_timesteps
            return self.dir / "model.zip"

    return SuccessEval, Checkpointer


def _write_evals(path: Path, history: list[dict[str, Any]]) -> None:
    if not history:
        return
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    tmp.replace(path)


# -- the API ----------------------------------------------------------------------
@dataclass
class Result:
    """A finished (or interrupted) run: its folder and final metrics."""

    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: str | Path) -> Result:
        run_dir = Path(run_dir)
        metrics = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").exists() else {}
        return cls(run_dir, metrics)

    def experiment(self) -> Experiment:
        import yaml

        config = yaml.safe_load((self.run_dir / "config.yaml").read_text())
        return Experiment.from_config(config, run_dir=self.run_dir)

    def evaluate(self, episodes: int = 100, deterministic: bool | None = None, seed: int | None = None) -> dict[str, Any]:
        """Success rate of the trained policy on the plain env: no teacher, no LLM.

        Writes `eval.json` in the run dir and returns it.
        """
        exp = self.experiment()
        path = self.run_dir / "model.zip"
        if not path.exists():
            path = self.run_dir / "checkpoints" / "model.zip"
        if not path.exists():
            raise ConfigError(f"No trained model in {self.run_dir} (model.zip or checkpoints/model.zip).")
        cls, _ = _learner_class(exp.learner)
        model = cls.load(path, device="cpu")
        if deterministic is not None:
            exp.eval_deterministic = deterministic
        out = exp._evaluate(model, episodes, offset=0, seed=seed if seed is not None else exp.seed + 1_000_003)
        out.update(episodes=episodes, model=str(path), teacher_used=False)
        write_json(self.run_dir / "eval.json", out)
        return out


class Experiment:
    """One training run: env + (optional) teacher + SB3 learner, fully described by its config.

    Args:
        env: a MiniGrid/BabyAI id.
        teacher: a `Teacher`, or a config value (None, "oracle", "random", {"type": "subgoal", ...}).
        learner: PPO, A2C, DQN or RecurrentPPO.
        total_steps: environment steps to train.
        n_envs, vec_env: parallel envs and "dummy" or "subproc".
        bonus, max_bonus: shaping paid per subgoal and its cap per episode.
        observe_subgoal: give the policy the current subgoal (Dict observation).
        eval_every, eval_episodes, eval_deterministic: periodic success evaluation without the teacher.
        eval_gate: skip that evaluation (and report the training success instead, marked
            `evaluated: false`) while the training success rate is below this; it saves
            evaluating hundreds of timed-out episodes early on. The last evaluation always runs.
        target, eval_window, stop_at_target: `steps_to_target` = first step where the mean of the
            last `eval_window` evaluations reaches `target`; optionally stop training there.
        checkpoint_every: steps between checkpoints (run_dir/checkpoints).
        run_dir: the folder (default: a fresh `runs/env__subgoal__seed__time`).
        torch_threads: torch CPU threads for this process (1: tiny MLPs are fastest single-threaded,
            and extra threads spin against the env workers; None leaves torch's setting).
    """

    def __init__(
        self,
        env: str,
        teacher: Any = None,
        learner: str = "PPO",
        total_steps: int = 100_000,
        seed: int = 0,
        *,
        n_envs: int = 8,
        vec_env: str = "dummy",
        bonus: float = 0.1,
        max_bonus: float = 0.3,
        observe_subgoal: bool = False,
        learner_kwargs: dict[str, Any] | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        env_kwargs: dict[str, Any] | None = None,
        eval_every: int = 10_000,
        eval_episodes: int = 20,
        eval_deterministic: bool = False,
        eval_n_envs: int = 4,
        eval_gate: float = 0.2,
        target: float = 0.9,
        eval_window: int = 2,
        stop_at_target: bool = False,
        checkpoint_every: int = 50_000,
        run_dir: str | Path | None = None,
        progress_bar: bool = False,
        torch_threads: int | None = 1,
    ) -> None:
        _check_env_id(env)
        _learner_class(learner)
        if vec_env not in ("dummy", "subproc"):
            raise ConfigError(f"vec_env must be 'dummy' or 'subproc', got {vec_env!r}.")
        if int(total_steps) <= 0 or int(n_envs) <= 0:
            raise ConfigError("total_steps and n_envs must be positive.")
        self.env_id = env
        self.teacher_spec = teacher
        self.learner = learner
        self.total_steps = int(total_steps)
        self.seed = int(seed)
        self.n_envs = int(n_envs)
        self.vec_env = vec_env
        self.bonus, self.max_bonus = float(bonus), float(max_bonus)
        if not 0 <= self.bonus <= self.max_bonus < 1:
            raise ConfigError(f"need 0 <= bonus <= max_bonus < 1 (the task reward), got {bonus}, {max_bonus}.")
        self.observe_subgoal = bool(observe_subgoal)
        self.learner_kwargs = dict(learner_kwargs or {})
        self.policy_kwargs = dict(policy_kwargs or {"net_arch": [64, 64]})
        self.env_kwargs = dict(env_kwargs or {})
        self.eval_every, self.eval_episodes = int(eval_every), int(eval_episodes)
        self.eval_deterministic, self.eval_n_envs = bool(eval_deterministic), int(eval_n_envs)
        self.eval_gate = float(eval_gate)
        self.target, self.eval_window, self.stop_at_target = float(target), int(eval_window), bool(stop_at_target)
        self.checkpoint_every = int(checkpoint_every)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress_bar = progress_bar
        self.torch_threads = torch_threads
        self.teacher = make_teacher(teacher, seed=self.seed)  # validates the spec now

    def __repr__(self) -> str:
        return f"Experiment(env={self.env_id!r}, teacher={self.teacher!r}, learner={self.learner!r}, total_steps={self.total_steps}, seed={self.seed})"

    # -- config round trip ----------------------------------------------------
    @classmethod
    def from_config(cls, config: dict[str, Any], run_dir: str | Path | None = None) -> Experiment:
        """Build from a `method: subgoal` config mapping (see configs/minigrid_doorkey.yaml)."""
        if not isinstance(config, dict):
            raise ConfigError("A config must be a mapping of keys to values.")
        bad = set(config) - _CONFIG_KEYS
        if bad:
            raise ConfigError(f"Unknown config key(s) {sorted(bad)}; allowed: {sorted(_CONFIG_KEYS)}.")
        if "env" not in config:
            raise ConfigError("The config needs an `env` (e.g. MiniGrid-DoorKey-8x8-v0).")
        guidance = dict(config.get("guidance") or {})
        evalc = dict(config.get("eval") or {})
        for name, part, allowed in (("guidance", guidance, _GUIDANCE_KEYS), ("eval", evalc, _EVAL_KEYS)):
            if set(part) - allowed:
                raise ConfigError(f"Unknown {name} option(s) {sorted(set(part) - allowed)}; allowed: {sorted(allowed)}.")
        return cls(
            env=config["env"],
            teacher=config.get("teacher"),
            learner=config.get("learner", "PPO"),
            total_steps=config.get("total_steps", 100_000),
            seed=config.get("seed", 0),
            n_envs=config.get("n_envs", 8),
            vec_env=config.get("vec_env", "dummy"),
            bonus=guidance.get("bonus", 0.1),
            max_bonus=guidance.get("max_bonus", 0.3),
            observe_subgoal=guidance.get("observe_subgoal", False),
            learner_kwargs=config.get("learner_kwargs"),
            policy_kwargs=config.get("policy_kwargs"),
            env_kwargs=config.get("env_kwargs"),
            eval_every=evalc.get("every", 10_000),
            eval_episodes=evalc.get("episodes", 20),
            eval_deterministic=evalc.get("deterministic", False),
            eval_n_envs=evalc.get("n_envs", 4),
            eval_gate=evalc.get("gate", 0.2),
            target=evalc.get("target", 0.9),
            eval_window=evalc.get("window", 2),
            stop_at_target=evalc.get("stop_at_target", False),
            checkpoint_every=config.get("checkpoint_every", 50_000),
            run_dir=run_dir,
            progress_bar=bool(config.get("progress_bar", False)),
        )

    def to_config(self) -> dict[str, Any]:
        return {
            "method": "subgoal",
            "env": self.env_id,
            "seed": self.seed,
            "learner": self.learner,
            "total_steps": self.total_steps,
            "n_envs": self.n_envs,
            "vec_env": self.vec_env,
            "teacher": _teacher_spec(self.teacher),
            "guidance": {"bonus": self.bonus, "max_bonus": self.max_bonus, "observe_subgoal": self.observe_subgoal},
            "learner_kwargs": self.learner_kwargs,
            "policy_kwargs": self.policy_kwargs,
            "env_kwargs": self.env_kwargs,
            "eval": {
                "every": self.eval_every, "episodes": self.eval_episodes, "deterministic": self.eval_deterministic,
                "n_envs": self.eval_n_envs, "gate": self.eval_gate, "target": self.target, "window": self.eval_window,
                "stop_at_target": self.stop_at_target,
            },
            "checkpoint_every": self.checkpoint_every,
        }

    # -- building blocks --------------------------------------------------------
    def _env_fn(self, teacher: Any) -> Any:
        from llmguide.agents.guidance import make_minigrid_env

        return make_minigrid_env(
            self.env_id, teacher, observe_subgoal=self.observe_subgoal, bonus=self.bonus,
            max_bonus=self.max_bonus, env_kwargs=self.env_kwargs,
        )

    def make_vec_env(self, teacher: Any = None, n_envs: int | None = None, seed: int | None = None, subproc: bool | None = None) -> Any:
        """SB3 VecEnv of this experiment's env stack (Monitor-wrapped)."""
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

        use_subproc = self.vec_env == "subproc" if subproc is None else subproc
        cls = SubprocVecEnv if use_subproc else DummyVecEnv
        kwargs = {"start_method": "spawn"} if use_subproc else None
        return make_vec_env(
            self._env_fn(teacher), n_envs=n_envs or self.n_envs, seed=self.seed if seed is None else seed,
            vec_env_cls=cls, vec_env_kwargs=kwargs,
        )

    def _policy(self) -> str:
        if self.learner == "RecurrentPPO":
            return "MultiInputLstmPolicy" if self.observe_subgoal else "MlpLstmPolicy"
        return "MultiInputPolicy" if self.observe_subgoal else "MlpPolicy"

    def _evaluate(self, model: Any, episodes: int, offset: int = 0, seed: int | None = None) -> dict[str, Any]:
        """Success of `model` on fresh plain envs (no teacher), SB3's evenly split episodes."""
        import numpy as np
        from stable_baselines3.common.evaluation import evaluate_policy

        n = max(1, min(self.eval_n_envs, episodes))
        base_seed = (self.seed + 100_000 + 7919 * offset) if seed is None else seed
        venv = self.make_vec_env(None, n_envs=n, seed=base_seed, subproc=False)
        try:
            rewards, lengths = evaluate_policy(
                model, venv, n_eval_episodes=episodes, deterministic=self.eval_deterministic,
                return_episode_rewards=True, warn=False,
            )
        finally:
            venv.close()
        rewards_a, lengths_a = np.asarray(rewards, dtype=float), np.asarray(lengths, dtype=float)
        return {
            "success_rate": float(np.mean(rewards_a > 0)),
            "mean_return": float(rewards_a.mean()),
            "mean_length": float(lengths_a.mean()),
        }

    # -- run -----------------------------------------------------------------------
    @staticmethod
    def compare(run_dirs_or_results: Any, out_dir: str | Path | None = None) -> Any:
        """One table + plots across runs (any methods); see ``llmguide.report.compare``."""
        from llmguide.report import compare

        return compare(run_dirs_or_results, out_dir)

    def run(self, resume: bool = False) -> Result:
        """Train (or continue from `run_dir/checkpoints` when `resume`), evaluate, plot, return metrics.

        Ctrl-C saves a checkpoint first, then re-raises KeyboardInterrupt.
        """
        from stable_baselines3.common.callbacks import CallbackList
        from stable_baselines3.common.logger import configure

        from llmguide.agents.guidance import TeacherMetricsCallback
        from llmguide.llm import METER
        from llmguide.plots import plot_curves

        run_dir = self.run_dir or make_run_dir(self.env_id, "subgoal", self.seed)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        if not (run_dir / "config.yaml").exists():
            write_yaml(run_dir / "config.yaml", self.to_config())
        teacher = self.teacher
        if teacher is not None and getattr(teacher, "uses_llm", False) and teacher.cache is not None and teacher.cache.path is None and self.vec_env == "subproc":
            from llmguide.teachers import TeacherCache

            teacher.cache = TeacherCache(run_dir / "teacher_cache.sqlite")  # shared by the workers
        if self.torch_threads:
            import torch

            torch.set_num_threads(self.torch_threads)
        METER.reset()
        cls, defaults = _learner_class(self.learner)
        state_path = run_dir / "checkpoints" / "state.json"
        resuming = resume and state_path.exists()
        state = read_json(state_path) if resuming else {}
        history: list[dict[str, Any]] = list(state.get("evals", []))
        venv = self.make_vec_env(teacher)
        try:
            if resuming:
                model = cls.load(run_dir / "checkpoints" / "model.zip", env=venv, device="cpu")
                for old in sorted(run_dir.glob("progress*.csv"), reverse=True):
                    if old.name == "progress.csv":
                        old.rename(run_dir / f"progress-{len(list(run_dir.glob('progress-*.csv')))}.csv")
            else:
                kwargs = {**defaults, **self.learner_kwargs}
                kwargs.setdefault("policy_kwargs", self.policy_kwargs)
                model = cls(self._policy(), venv, seed=self.seed, verbose=0, device="cpu", **kwargs)
            model.set_logger(configure(str(run_dir), ["csv", "tensorboard"]))
            metrics_cb = TeacherMetricsCallback() if teacher is not None else None
            if metrics_cb is not None and state.get("teacher_totals"):
                for key, value in state["teacher_totals"].items():
                    setattr(metrics_cb.totals, key, value)
                metrics_cb.episodes = int(state.get("episodes", 0))
            SuccessEval, Checkpointer = _callbacks()
            evaluator = SuccessEval(self, run_dir, history)
            checkpointer = Checkpointer(self, run_dir, history, metrics_cb)
            callbacks = [cb for cb in (metrics_cb, evaluator, checkpointer) if cb is not None]
            remaining = self.total_steps - int(state.get("num_timesteps", 0))
            start = time.perf_counter()
            try:
                if remaining > 0:
                    model.learn(
                        remaining, callback=CallbackList(callbacks), reset_num_timesteps=not resuming,
                        progress_bar=self.progress_bar,
                    )
            except KeyboardInterrupt:
                checkpointer.save()
                raise
            train_s = time.perf_counter() - start
            if not history or history[-1]["steps"] != model.num_timesteps:
                evaluator.num_timesteps = model.num_timesteps
                evaluator.evaluate_now(force=True)
            checkpointer.save()
            model.save(run_dir / "model.zip")
        finally:
            venv.close()
        steps_done = int(model.num_timesteps) - int(state.get("num_timesteps", 0))
        compute_s = max(1e-9, train_s - evaluator.eval_seconds)
        train_success = [float(x) for x in (model.ep_success_buffer or [])]
        reached = steps_to_target(history, self.target, self.eval_window)
        plot = plot_curves(
            {teacher_label(teacher): ([e["steps"] for e in history], [e["success_rate"] for e in history])},
            run_dir / "learning_curve.png",
            title=f"{self.env_id} · {self.learner}",
            ylabel="success rate (no teacher)",
            hline=self.target,
            ylim=(-0.02, 1.02),
        )
        metrics: dict[str, Any] = {
            "env": self.env_id,
            "teacher": teacher_label(teacher),
            "learner": self.learner,
            "seed": self.seed,
            "total_steps": int(model.num_timesteps),
            "success_rate": history[-1]["success_rate"] if history else 0.0,
            "best_success_rate": max((e["success_rate"] for e in history), default=0.0),
            "train_success_rate": sum(train_success) / len(train_success) if train_success else 0.0,
            "target": self.target,
            "steps_to_target": reached,
            "steps_per_s": steps_done / compute_s,
            "wall_s": train_s,
            "evals": history,
            "plot": str(plot),
            "model": str(run_dir / "model.zip"),
            "llm": METER.snapshot().as_dict(),
        }
        if metrics_cb is not None:
            metrics["teacher_metrics"] = {**metrics_cb.summary(), "calls_curve": metrics_cb.calls_curve}
        write_json(run_dir / "metrics.json", metrics)
        return Result(run_dir, metrics)


# -- runner for `llmguide run` ------------------------------------------------------
def _arm_table_row(name: str, m: dict[str, Any]) -> dict[str, Any]:
    tm = m.get("teacher_metrics") or {}
    return {
        "arm": name,
        "teacher": m.get("teacher"),
        "success": round(float(m.get("success_rate", 0.0)), 3),
        "best": round(float(m.get("best_success_rate", 0.0)), 3),
        f"to_{m.get('target', 0.9)}": m.get("steps_to_target") or f">{m.get('total_steps')}",
        "steps/s": round(float(m.get("steps_per_s", 0.0))),
        "llm_calls": tm.get("teacher_calls", 0),
    }


def run_subgoal_config(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Runner for `method: subgoal`: one guided run, or with `compare: plain`
    a plain-PPO arm and a guided arm side by side (run_dir/plain, run_dir/guided)
    and one plot of both learning curves."""
    config = dict(config)
    resume = bool(config.pop("resume", False))
    compare = config.pop("compare", None)
    if compare in (None, False, "none"):
        result = Experiment.from_config(config, run_dir=run_dir).run(resume=resume)
        metrics = dict(result.metrics)
        metrics["table"] = [_arm_table_row("guided" if config.get("teacher") else "plain", metrics)]
        return metrics
    if compare not in ("plain", "baseline", True):
        raise ConfigError(f"compare must be 'plain' (train plain PPO next to the guided run), got {compare!r}.")
    from llmguide.plots import plot_curves

    arms: dict[str, dict[str, Any]] = {}
    for name, teacher in (("plain", None), ("guided", config.get("teacher"))):
        arm_dir = Path(run_dir) / name
        arm_cfg = copy.deepcopy(config)
        arm_cfg["teacher"] = teacher
        if resume and (arm_dir / "metrics.json").exists():
            arms[name] = read_json(arm_dir / "metrics.json")
            continue
        arm_dir.mkdir(parents=True, exist_ok=True)
        write_yaml(arm_dir / "config.yaml", arm_cfg)
        arms[name] = Experiment.from_config(arm_cfg, run_dir=arm_dir).run(resume=resume).metrics
    curves = {
        f"{name} ({m['teacher']})": ([e["steps"] for e in m["evals"]], [e["success_rate"] for e in m["evals"]])
        for name, m in arms.items()
    }
    plot = plot_curves(
        curves, Path(run_dir) / "learning_curves.png", title=f"{config['env']} · {config.get('learner', 'PPO')}",
        ylabel="success rate (no teacher)", hline=arms["guided"].get("target", 0.9), ylim=(-0.02, 1.02),
    )
    plain, guided = arms["plain"], arms["guided"]
    return {
        "env": config["env"],
        "seed": config.get("seed", 0),
        "plot": str(plot),
        "success_rate_plain": plain["success_rate"],
        "success_rate_guided": guided["success_rate"],
        "steps_to_target_plain": plain["steps_to_target"],
        "steps_to_target_guided": guided["steps_to_target"],
        "llm_calls": (guided.get("teacher_metrics") or {}).get("teacher_calls", 0),
        "table": [_arm_table_row("plain", plain), _arm_table_row("guided", guided)],
        "arms": {name: {k: v for k, v in m.items() if k != "evals"} for name, m in arms.items()},
    }


def evaluate_run_dir(run_dir: str | Path, episodes: int = 100, deterministic: bool | None = None) -> dict[str, Any]:
    """`llmguide eval RUN_DIR`: evaluate the run's policy (or each arm of a compare run) without the teacher."""
    run_dir = Path(run_dir)
    if (run_dir / "model.zip").exists() or (run_dir / "checkpoints" / "model.zip").exists():
        out = Result(run_dir).evaluate(episodes=episodes, deterministic=deterministic)
        return {**out, "table": [{"arm": run_dir.name, **{k: out[k] for k in ("success_rate", "mean_return", "mean_length")}}]}
    arms = [d for d in sorted(run_dir.iterdir()) if d.is_dir() and (d / "config.yaml").exists()] if run_dir.is_dir() else []
    if not arms:
        raise ConfigError(f"{run_dir} holds no trained model (model.zip or checkpoints/model.zip).")
    results = {d.name: Result(d).evaluate(episodes=episodes, deterministic=deterministic) for d in arms}
    table = [{"arm": name, **{k: r[k] for k in ("success_rate", "mean_return", "mean_length")}} for name, r in results.items()]
    write_json(run_dir / "eval.json", results)
    return {"arms": results, "table": table}
