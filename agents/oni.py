"""The `oni` method (Online Intrinsic rewards, 2024) on NetHack: exports `ONIMethod`, `ONIConfig`,
`make_nle_env`, `make_nle_vec_env`.

PPO (or any SB3 learner) trains on NLE; an annotator process labels the
game's messages with an LLM, asynchronously; a reward model distilled from
those labels adds ``coef * score / N(caption)^beta`` to the reward through
`ONIRewardWrapper` (a `VecEnvWrapper`), so the learner never waits for the
LLM. ``reward_model: none`` is the extrinsic-only baseline (no annotator).
A started annotator is supervised (restarted with backoff if it dies; restarts
and downtime in the run's metrics); the classifier and ranking models train in
a process of their own on the annotator's CPUs, so the learner only looks
scores up.
The policy is evaluated on the plain NLE env. Everything else (training,
checkpoints, resume, logging, the run record) is the core's (`llmguide.core`).

    >>> from llmguide.core import prepare, run                              # doctest: +SKIP
    >>> run(prepare({"method": "oni", "total_steps": 2048, "llm": "smollm2"}), "runs/oni")
"""

from __future__ import annotations

import difflib
import functools
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator

from llmguide.config import EvalSettings, RunSettings, TrainedConfig
from llmguide.errors import EnvNotFoundError
from llmguide.methods import TrainedMethod

__all__ = ["ONIConfig", "ONIMethod", "make_nle_env", "make_nle_vec_env"]

LABELS_DB = "oni_labels.sqlite"


class ONIConfig(TrainedConfig):
    """`method: oni` — PPO on NetHack with ONI intrinsic rewards from an asynchronous LLM annotator."""

    default_total_steps: ClassVar[int] = 20_000

    env: str = Field("NetHackScore-v0", description="An NLE task id (NetHackScore-v0, NetHackStaircase-v0, ...).")
    reward_model: Literal["hash", "classifier", "ranking", "none"] = Field(
        "hash", description="hash (retrieval) | classifier (MiniLM + logistic) | ranking (Bradley-Terry) | "
        "none (extrinsic reward only, no annotator).")
    reward_trainer: Literal["process", "thread"] = Field(
        "process", description="Where the classifier/ranking models embed and refit: a process of their own on "
        "the annotator's CPUs (the learner only looks scores up) or a thread of the learner's process.")
    max_episode_steps: PositiveInt = Field(1000, description="NLE episode cap (CPU-sized).")
    coef: float = Field(0.1, ge=0.0, description="reward = extrinsic + coef * intrinsic.")
    beta: float = Field(0.5, ge=0.0, description="Count decay: intrinsic = score / N(caption)^beta (0 = no decay).")
    count_scope: Literal["episode", "global"] = Field("episode", description="N counted per episode or over the run.")
    llm: str = Field("smollm2", description="The annotator's LLM when the run starts it (gguf:PATH, openai:MODEL@URL).")
    annotator_url: str | None = Field(None, description="URL of a running `llmguide serve annotator` (None: start one).")
    annotator_nice: int = Field(5, ge=0, le=19, description="CPU niceness of the started annotator (learner keeps priority).")
    annotator_threads: PositiveInt | None = Field(1, description="llama.cpp threads of the started annotator.")
    annotator_cpus: list[NonNegativeInt] | None = Field(
        None, description='Pin the started annotator, and the classifier/ranking trainer process, to these CPU ids: '
        '"1", "0,1", "2-3" or a list (None: no pinning).')
    batch_size: int = Field(8, ge=1, le=64, description="Captions per annotator LLM call.")
    prefs_per_batch: int = Field(2, ge=0, le=32, description="Pairwise preferences per LLM call (ranking model).")
    queue_size: PositiveInt = Field(4096, description="Annotator queue bound (overflow dropped and counted).")
    annotator_max_restarts: NonNegativeInt = Field(
        5, description="Restart attempts for a started annotator that dies (backoff between them; 0: never). "
        "After that the run goes on with extrinsic reward only, counted in annotator_downtime_s.")
    eval: EvalSettings = Field(default_factory=lambda: EvalSettings(episodes=4),
                               description="Evaluation on the plain NLE env (no intrinsic reward).")

    @field_validator("annotator_cpus", mode="before")
    @classmethod
    def _cpu_list(cls, value: Any) -> Any:
        """A list of CPU ids from "0,1", "2-3" or 1 (YAML and --set give strings and ints)."""
        if value is None or isinstance(value, list):
            return value
        cpus: list[int] = []
        for part in str(value).split(","):
            lo, _, hi = part.strip().partition("-")
            if lo:
                cpus += range(int(lo), int(hi or lo) + 1)
        if not cpus:
            raise ValueError("name at least one CPU id, or null for no pinning")
        return cpus

    @field_validator("env")
    @classmethod
    def _nle_env(cls, env_id: str) -> str:
        import gymnasium as gym
        import nle  # noqa: F401  (registers the NetHack ids)

        ids = [k for k, spec in gym.registry.items() if "nle" in str(spec.entry_point)]
        if env_id not in ids:
            close = difflib.get_close_matches(env_id, ids, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise EnvNotFoundError(f"{env_id!r} is not an NLE task.{hint} Try NetHackScore-v0 or NetHackStaircase-v0.")
        return env_id


def make_nle_env(env_id: str, max_episode_steps: int = 1000) -> Any:
    """One NLE env reduced to what the policy reads (glyph crop, blstats, message)."""
    import gymnasium as gym
    import nle  # noqa: F401  (registers the NetHack ids)
    from llmguide.teachers.oni.wrapper import NLEObsWrapper

    try:
        env = gym.make(env_id, observation_keys=("glyphs", "blstats", "message"), max_episode_steps=max_episode_steps,
                       fix_moon_phase=True)
    except gym.error.Error as err:
        raise EnvNotFoundError(f"{env_id!r} is not an NLE task ({err}); try NetHackScore-v0 or NetHackStaircase-v0.") from None
    return NLEObsWrapper(env)


def make_nle_vec_env(env_id: str, n_envs: int, seed: int, max_episode_steps: int = 1000) -> Any:
    """DummyVecEnv of NLE envs under a VecMonitor (whose returns are extrinsic), for notebooks."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

    venv = DummyVecEnv([functools.partial(make_nle_env, env_id, max_episode_steps) for _ in range(n_envs)])
    venv.seed(seed)
    return VecMonitor(venv)


def _figures_callback() -> Any:
    """An SB3 callback timing `learn()` and reading the training episodes' (extrinsic) returns."""
    from stable_baselines3.common.callbacks import BaseCallback

    class TrainingFigures(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.returns: list[float] = []
            self._seconds, self._start = 0.0, None
            self._cpu_seconds, self._cpu_start = 0.0, None

        def elapsed(self) -> float:
            """Seconds in `learn()` so far (a checkpoint asks mid-run)."""
            running = time.perf_counter() - self._start if self._start is not None else 0.0
            return self._seconds + running

        def cpu(self) -> float:
            """CPU seconds of this (the learner's) process, all its threads, in `learn()` so far: steps per
            CPU second measure what ONI costs the learner even when other jobs take its CPU away."""
            running = time.process_time() - self._cpu_start if self._cpu_start is not None else 0.0
            return self._cpu_seconds + running

        def _on_training_start(self) -> None:
            self._start, self._cpu_start = time.perf_counter(), time.process_time()

        def _on_step(self) -> bool:
            return True

        def _on_training_end(self) -> None:
            self._seconds, self._start = self.elapsed(), None
            self._cpu_seconds, self._cpu_start = self.cpu(), None
            self.returns = [float(e["r"]) for e in self.model.ep_info_buffer]

    return TrainingFigures()


class ONIMethod(TrainedMethod):
    """ONI intrinsic rewards guiding an SB3 learner on NetHack (see the module docstring)."""

    name = "oni"
    Config = ONIConfig
    policy = "MultiInputPolicy"
    #: the learner's defaults on NLE (CPU-sized)
    DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "PPO": {"n_steps": 128, "batch_size": 256, "n_epochs": 4, "learning_rate": 3e-4, "ent_coef": 0.01, "gamma": 0.99},
    }
    #: NLE's end_status of a task won (nle.env.base.NLE.StepStatus.TASK_SUCCESSFUL)
    TASK_SUCCESSFUL: ClassVar[int] = 2
    #: run figures summed over the segments of a resumed run
    TOTALS: ClassVar[tuple[str, ...]] = ("learn_s", "learn_cpu_s", "learner_wait_s", "client_overhead_s",
                                         "wrapper_overhead_s", "llm_calls", "llm_fallbacks", "annotator_restarts", "annotator_deaths",
                                         "annotator_downtime_s", "learner_blocked_s")

    def __init__(self, config: ONIConfig, settings: RunSettings, run_dir: Path,
                 objects: dict[str, Any] | None = None) -> None:
        super().__init__(config, settings, run_dir, objects)
        self.config: ONIConfig = config
        self.proc: Any = None  # the annotator process this run started (the first one; see `annotator`)
        self.supervisor: Any = None  # restarts a started annotator that dies
        self.client: Any = None
        self.reward_model: Any = None
        self.wrapper: Any = None
        self.figures = _figures_callback()
        self.annotator_stats: dict[str, Any] | None = None
        self._saved: dict[str, Any] = {}  # what the checkpoint carried (totals of earlier segments, counts)

    @property
    def labels_db(self) -> Path:
        """The label store in the run dir: a resume reopens the same labels and dedup set."""
        return self.run_dir / LABELS_DB

    def label(self) -> str:
        return self.settings.name or f"oni:{self.config.reward_model}"

    # -- what an episode means -----------------------------------------------------------------
    def success(self, terminated: bool, truncated: bool, episode_return: float, info: dict[str, Any]) -> bool:
        """NLE says so: the task's own end status (NetHackScore has none: never a success)."""
        return int(info.get("end_status", 0)) == self.TASK_SUCCESSFUL

    # -- the learner ---------------------------------------------------------------------------
    def make_env(self, for_eval: bool = False) -> Any:
        # the same env either way: the intrinsic reward is added by wrap_vec_env, on the training VecEnv only
        return functools.partial(make_nle_env, self.config.env, self.config.max_episode_steps)

    def learner_defaults(self) -> dict[str, Any]:
        return dict(self.DEFAULTS.get(self.config.learner, {}))

    def policy_name(self) -> str:
        return "MultiInputLstmPolicy" if self.config.learner == "RecurrentPPO" else self.policy

    def policy_kwargs(self) -> dict[str, Any]:
        from llmguide.teachers.oni.wrapper import NLEFeatures

        return {"features_extractor_class": NLEFeatures, "features_extractor_kwargs": {"features_dim": 256},
                "net_arch": [128]}

    def start(self) -> None:
        """Start the annotator (unless one is given or no reward model is used), its client and the reward model."""
        cfg = self.config
        if cfg.reward_model == "none":
            return
        from llmguide.teachers.oni.client import AnnotatorClient
        from llmguide.teachers.oni.process import start_annotator
        from llmguide.teachers.oni.reward import make_reward_model
        from llmguide.teachers.oni.supervisor import AnnotatorSupervisor

        url = cfg.annotator_url
        if url is None:
            self.proc = start_annotator(
                cfg.llm, self.labels_db, nice=cfg.annotator_nice, cpus=cfg.annotator_cpus, threads=cfg.annotator_threads,
                batch_size=cfg.batch_size, prefs_per_batch=cfg.prefs_per_batch, queue_size=cfg.queue_size,
            )
            url = self.proc.url
        # the client starts at label cursor 0: a resumed run's reward model gets every stored label back
        self.client = AnnotatorClient(url)
        if self.proc is not None:  # a started annotator is ours to keep alive; a given URL is someone else's
            self.supervisor = AnnotatorSupervisor(self.proc, max_restarts=cfg.annotator_max_restarts,
                                                  on_restart=lambda new: self.client.reconnect_now(new.url))
        # classifier/ranking: embedding and refits run in a trainer process of their own, on the annotator's CPUs
        self.reward_model = make_reward_model(cfg.reward_model, remote=cfg.reward_trainer == "process",
                                              cpus=cfg.annotator_cpus, nice=cfg.annotator_nice)

    def wrap_vec_env(self, venv: Any) -> Any:
        if self.reward_model is None:
            return venv
        from llmguide.teachers.oni.wrapper import ONIRewardWrapper

        cfg = self.config
        self.wrapper = ONIRewardWrapper(venv, self.reward_model, self.client, coef=cfg.coef, beta=cfg.beta,
                                        count_scope=cfg.count_scope)
        if cfg.count_scope == "global" and self._saved.get("global_counts"):
            # global scope: one Counter shared by every env; the decay goes on where the checkpoint left it
            self.wrapper._counts[0].update(self._saved["global_counts"])
        return self.wrapper

    def callbacks(self) -> list[Any]:
        if self.wrapper is None:
            return [self.figures]
        from llmguide.teachers.oni.wrapper import ONILogCallback

        return [ONILogCallback(self.wrapper), self.figures]

    def after_training(self) -> None:
        """Count the last captions in (a short run may end before the client's first send), read the annotator."""
        if self.client is not None:
            self.client.flush(5)
            self._read_annotator()

    def _read_annotator(self) -> None:
        """The annotator's `/stats` (its LLM calls, labels, dedup); an unreachable one keeps the last reading."""
        import httpx

        try:
            self.annotator_stats = httpx.get(f"{self.client.url}/stats", timeout=5).json()
        except httpx.HTTPError as err:
            self.annotator_stats = {**(self.annotator_stats or {}), "error": str(err)}

    # -- run bookkeeping -----------------------------------------------------------------------
    def _totals(self) -> dict[str, float]:
        """Figures of this segment plus those of the segments before a resume."""
        now = {"learn_s": self.figures.elapsed(), "learn_cpu_s": self.figures.cpu()}
        if self.wrapper is not None:
            now.update(wrapper_overhead_s=float(self.wrapper.overhead_s), learner_blocked_s=float(self.wrapper.blocked_s))
        if self.client is not None:
            client = self.client.stats()
            now.update(learner_wait_s=float(client["wait_s"]), client_overhead_s=float(client["client_overhead_s"]))
        if self.supervisor is not None:
            sup = self.supervisor.stats()
            now.update(annotator_restarts=float(sup["restarts"]), annotator_deaths=float(sup["deaths"]),
                       annotator_downtime_s=float(sup["downtime_s"]))
        if self.annotator_stats:  # its counters restart with the annotator, so each segment adds its own
            now.update(llm_calls=float(self.annotator_stats.get("llm_calls", 0)),
                       llm_fallbacks=float(self.annotator_stats.get("llm_fallbacks", 0)))
        return {key: float(self._saved.get(key, 0.0)) + now.get(key, 0.0) for key in self.TOTALS}

    def state_dict(self) -> dict[str, Any]:
        if self.client is not None:
            self._read_annotator()
        state: dict[str, Any] = dict(self._totals())
        if self.wrapper is not None and self.config.count_scope == "global":
            state["global_counts"] = dict(self.wrapper._counts[0])
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._saved = dict(state)

    def llm_usage(self) -> dict[str, Any] | None:
        """The LLM runs in the annotator process, not in this one: its calls, from `/stats` (a shared
        annotator given by `annotator_url` counts every learner it serves)."""
        if self.annotator_stats is None and "llm_calls" not in self._saved:
            return None
        totals, stats = self._totals(), self.annotator_stats or {}
        return {"calls": int(totals["llm_calls"]), "cache_hits": 0, "fallbacks": int(totals["llm_fallbacks"]),
                "errors": int(stats.get("llm_errors", 0)), "llm": stats.get("llm", self.config.llm),
                **{k: float(stats.get(f"llm_{k}", 0.0)) for k in ("latency_ms_p50", "latency_ms_p95", "latency_ms_mean")}}

    def extras(self) -> dict[str, Any]:
        totals = self._totals()
        learn_s = max(totals["learn_s"], 1e-9)
        returns = self.figures.returns
        out: dict[str, Any] = {
            "reward_model": self.config.reward_model, "reward_trainer": self.config.reward_trainer,
            "learner": self.config.learner, "learn_s": totals["learn_s"], "learn_cpu_s": totals["learn_cpu_s"],
            "train_episodes": len(returns), "train_return_mean": sum(returns) / len(returns) if returns else None,
        }
        if self.wrapper is not None:
            # learner_wait_s: time the env loop was blocked on the annotator (no blocking call is on that
            # path: ~0); client_overhead_s: time inside submit/drain (CPU cost, not waiting)
            out.update(
                learner_wait_s=totals["learner_wait_s"], client_overhead_s=totals["client_overhead_s"],
                client_overhead_frac=totals["client_overhead_s"] / learn_s,
                wrapper_overhead_frac=totals["wrapper_overhead_s"] / learn_s,
                oni=self.wrapper.stats(), client=self.client.stats() if self.client is not None else {},
            )  # oni and client: this segment's figures
        if self.reward_model is not None:
            model = self.reward_model.stats()
            # a reward-model failure (its trainer thread or process) is in the metrics, not only in the log
            out.update(reward_model_stats=model, reward_model_error=model.get("error"),
                       reward_model_errors=int(model.get("errors", 0)),
                       reward_trainer_restarts=int(model.get("restarts", 0)),
                       reward_trainer_downtime_s=float(model.get("downtime_s", 0.0)))
        if self.wrapper is not None:
            # learner_blocked_s: wall time minus the learner thread's CPU time inside ONI's part of step()
            # (lock, GIL and scheduler waits caused by ONI's threads), summed over the run
            out.update(learner_blocked_s=totals["learner_blocked_s"],
                       learner_blocked_frac=totals["learner_blocked_s"] / learn_s)
        if self.supervisor is not None:
            sup = self.supervisor.stats()
            out.update(annotator_restarts=int(totals["annotator_restarts"]), annotator_deaths=int(totals["annotator_deaths"]),
                       annotator_downtime_s=totals["annotator_downtime_s"], annotator_gave_up=sup["gave_up"],
                       annotator_restart_failures=sup["restart_failures"])
        if self.proc is not None:
            current = self.supervisor.proc if self.supervisor is not None else self.proc
            out.update(annotator_pid=current.pid, annotator_pids=self.supervisor.pids if self.supervisor is not None else [self.proc.pid],
                       annotator_cpus=current.cpus, labels_db=str(self.labels_db))
        if self.annotator_stats is not None:
            stats = self.annotator_stats
            submitted = out.get("client", {}).get("submitted", 0)
            # labels: in the label store (all segments of a resumed run); the annotator's counters are this segment's
            out.update(annotator=stats, labels=stats.get("store", {}).get("labels", stats.get("labels")),
                       labels_per_s=stats.get("labels_per_s"),
                       dedup_rate=stats.get("dedup_rate"),
                       dedup_rate_end_to_end=1.0 - stats.get("accepted", 0) / submitted if submitted else None)
        return out

    def close(self) -> None:
        """Close the supervisor, the client and the reward model and stop the annotator, whatever happens."""
        try:
            if self.supervisor is not None:
                self.supervisor.close()
            if self.client is not None:
                self.client.close()
        finally:
            try:
                if self.reward_model is not None:
                    self.reward_model.close()
            finally:
                if self.supervisor is not None:
                    self.supervisor.proc.stop()  # the one running now (a restarted one after a crash)
                if self.proc is not None:
                    self.proc.stop()  # the first one: already stopped or reaped, unless never supervised
