"""The one SB3 training path every trained method runs through: exports `train`,
`TrainOutcome`, `evaluate_policy_records`, `steps_to_target`, `RunInterrupted`.

`train(method, settings, run_dir)`:

- builds the VecEnv from the method's env thunk (`n_envs`, dummy or subproc),
  lets the method wrap it, and builds the learner from the learner registry
  with the method's defaults under the config's overrides;
- logs with SB3's logger to CSV and TensorBoard under the same namespaced keys
  (`eval/success_rate`, `teacher/...`, `oni/...`); a resumed segment writes its
  own `progress-resumeN.csv`, so no earlier row is ever overwritten;
- evaluates the policy on the plain env (no teacher, no LLM) every `eval.every`
  steps and at the end;
- checkpoints every `checkpoint_every` steps and on Ctrl-C: model, replay
  buffer for off-policy learners, step counter, eval history and the method's
  own state; `resume` continues from there;
- shows a progress bar in env steps when asked.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmguide.errors import ConfigError
from llmguide.learners import is_off_policy, learner_class
from llmguide.rundir import read_json, write_json

if TYPE_CHECKING:  # pragma: no cover
    from llmguide.agents.loop import EpisodeRecord
    from llmguide.config import RunSettings
    from llmguide.methods import TrainedMethod

__all__ = ["RunInterrupted", "TrainOutcome", "evaluate_policy_records", "steps_to_target", "train"]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run, after the run saved what a resume needs (`resumable`) at `progress`."""

    def __init__(self, run_dir: Path, progress: str, resumable: bool) -> None:
        super().__init__(progress)
        self.run_dir, self.progress, self.resumable = run_dir, progress, resumable


@dataclass
class TrainOutcome:
    """What training produced, for the run record."""

    model: Any
    steps: int
    episodes: int
    train_s: float
    eval_s: float
    steps_per_s: float
    history: list[dict[str, Any]]
    final_records: list[Any] = field(default_factory=list)
    resumes: int = 0
    #: LLM usage counters saved by earlier segments of a resumed run
    earlier_usage: dict[str, Any] | None = None


def steps_to_target(history: list[dict[str, Any]], target: float = 0.9, window: int = 2) -> int | None:
    """First step at which the mean success of the last `window` evaluations (without the teacher)
    reaches `target`; rows that were not evaluated never count as reaching it."""
    for i in range(len(history)):
        recent = history[max(0, i - window + 1) : i + 1]
        if len(recent) < window or not all(e.get("evaluated", True) for e in recent):
            continue
        if any(e.get("success") is None for e in recent):
            continue
        if sum(e["success"] for e in recent) / window >= target - 1e-9:  # (0.85 + 0.95) / 2 is 0.8999...
            return int(history[i]["steps"])
    return None


def _predict_masked(model: Any, obs: Any, venv: Any, deterministic: bool) -> Any:
    """`model.predict`, with the envs' action masks for MaskablePPO."""
    if type(model).__name__ == "MaskablePPO":
        masks = np.stack(venv.env_method("action_masks"))
        return model.predict(obs, action_masks=masks, deterministic=deterministic)[0]
    return model.predict(obs, deterministic=deterministic)[0]


def evaluate_policy_records(
    model: Any, method: TrainedMethod, episodes: int, *, seed: int, n_envs: int = 4, deterministic: bool = False,
) -> list[EpisodeRecord]:
    """Run the policy on the plain env (no teacher, no LLM) for `episodes`; one record each.

    The envs step together (one batched `predict`) and the i-th env's first
    episode is seeded `seed + i`, so the same seed gives the same episodes.
    """
    from stable_baselines3.common.vec_env import DummyVecEnv

    from llmguide.agents.loop import EpisodeRecord

    n = max(1, min(n_envs, episodes))
    venv = DummyVecEnv([method.make_env(for_eval=True) for _ in range(n)])
    records: list[EpisodeRecord] = []
    try:
        venv.seed(seed)
        obs = venv.reset()
        state = None
        starts = np.ones((n,), dtype=bool)
        returns, lengths = np.zeros(n), np.zeros(n, dtype=int)
        begun = [time.perf_counter()] * n
        quota = [episodes // n + (1 if i < episodes % n else 0) for i in range(n)]
        while len(records) < episodes:
            if hasattr(model.policy, "lstm_actor") or type(model).__name__ == "RecurrentPPO":
                actions, state = model.predict(obs, state=state, episode_start=starts, deterministic=deterministic)
            else:
                actions = _predict_masked(model, obs, venv, deterministic)
            obs, rewards, dones, infos = venv.step(actions)
            returns += rewards
            lengths += 1
            starts = dones
            for i, done in enumerate(dones):
                if not done:
                    continue
                info = dict(infos[i])
                truncated = bool(info.get("TimeLimit.truncated", False))
                if quota[i] > 0:
                    quota[i] -= 1
                    records.append(EpisodeRecord(
                        seed=seed + i, episode_return=float(returns[i]), length=int(lengths[i]),
                        terminated=not truncated, truncated=truncated,
                        success=method.success(not truncated, truncated, float(returns[i]), info),
                        seconds=time.perf_counter() - begun[i], llm_calls=0, extra=method.episode_extra(info),
                    ))
                returns[i], lengths[i], begun[i] = 0.0, 0, time.perf_counter()
    finally:
        venv.close()
    return records[:episodes]


def _figures(method: TrainedMethod, records: list[EpisodeRecord]) -> dict[str, Any]:
    return {
        "success": float(np.mean([r.success for r in records])) if records else None,
        "return_mean": float(np.mean([r.episode_return for r in records])) if records else None,
        "length_mean": float(np.mean([r.length for r in records])) if records else None,
        "score": method.score(records),
    }


def _callbacks(method: TrainedMethod, settings: RunSettings, run_dir: Path, history: list[dict[str, Any]],
               state: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The core's callbacks (evaluation, checkpoints, episode counter), built on first use."""
    from stable_baselines3.common.callbacks import BaseCallback

    from llmguide.record import run_usage

    cfg = method.config
    ev = cfg.eval  # type: ignore[attr-defined]

    class EpisodeCounter(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.episodes = int(state.get("episodes", 0))

        def _on_step(self) -> bool:
            self.episodes += int(np.sum(self.locals.get("dones", [])))
            return True

    class PeriodicEval(BaseCallback):
        """Every `eval.every` env steps: the policy alone on the plain env."""

        def __init__(self) -> None:
            super().__init__()
            self.next_at = (history[-1]["steps"] if history else 0) + ev.every
            self.seconds = 0.0
            self.reached = steps_to_target(history, ev.target, ev.window)
            self.final_records: list[Any] = []

        def _on_step(self) -> bool:
            if ev.every <= 0 or self.num_timesteps < self.next_at:
                return True
            self.next_at = self.num_timesteps + ev.every
            self.evaluate_now()
            return not (ev.stop_at_target and self.reached is not None)

        def evaluate_now(self, force: bool = False) -> dict[str, Any]:
            start = time.perf_counter()
            buf = list(getattr(self.model, "ep_success_buffer", None) or [])
            train_success = float(np.mean(buf)) if buf else None
            row: dict[str, Any] = {"steps": int(self.num_timesteps), "train_success": train_success}
            if force or ev.gate <= 0 or (train_success or 0.0) >= ev.gate:
                records = evaluate_policy_records(
                    self.model, method, ev.episodes, seed=settings.seed + 100_000 + 7919 * len(history),
                    n_envs=ev.n_envs, deterministic=ev.deterministic,
                )
                self.final_records = records
                row.update(_figures(method, records), evaluated=True)
            else:  # not worth many timed-out episodes: the training figure, marked as such
                row.update(success=train_success, return_mean=None, length_mean=None, score=None, evaluated=False)
            self.seconds += time.perf_counter() - start
            history.append(row)
            for key in ("success", "return_mean", "length_mean", "score"):
                if row.get(key) is not None:
                    self.logger.record(f"eval/{key}", row[key])
            if self.reached is None:
                self.reached = steps_to_target(history, ev.target, ev.window)
            return row

    class Checkpointer(BaseCallback):
        """Saves model, replay buffer, counters, eval history and the method's state."""

        def __init__(self, counter: EpisodeCounter) -> None:
            super().__init__()
            self.dir, self.counter = run_dir / "checkpoints", counter
            self.last = int(state.get("num_timesteps", 0))

        def _on_step(self) -> bool:
            if cfg.checkpoint_every > 0 and self.num_timesteps - self.last >= cfg.checkpoint_every:  # type: ignore[attr-defined]
                self.save()
            return True

        def save(self) -> None:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.dir / "model.tmp.zip"
            self.model.save(tmp)
            os.replace(tmp, self.dir / "model.zip")
            if is_off_policy(self.model):
                tmp_buf = self.dir / "replay_buffer.tmp.pkl"
                self.model.save_replay_buffer(tmp_buf)
                os.replace(tmp_buf, self.dir / "replay_buffer.pkl")
            write_json(self.dir / "state.json", {
                "num_timesteps": int(self.model.num_timesteps), "episodes": self.counter.episodes,
                "evals": history, "method_state": method.state_dict(), "resumes": int(state.get("resumes", 0)),
                "llm_usage": run_usage(method, state.get("llm_usage")),
                "train_s": float(state.get("train_s", 0.0)) + (time.perf_counter() - state["_segment_start"]),
            })
            self.last = int(self.model.num_timesteps)

    counter = EpisodeCounter()
    return counter, PeriodicEval(), Checkpointer(counter)


def _logger(run_dir: Path, suffix: str) -> Any:
    """SB3's logger writing CSV (`progress{suffix}.csv`, a fresh file per resumed segment) and TensorBoard."""
    from stable_baselines3.common.logger import Logger, make_output_format

    formats = [make_output_format("csv", str(run_dir), suffix), make_output_format("tensorboard", str(run_dir))]
    return Logger(str(run_dir), formats)


def train(method: TrainedMethod, settings: RunSettings, run_dir: Path) -> TrainOutcome:
    """Train `method`'s learner for `settings.total_steps` env steps (continuing a checkpoint when
    `settings.resume`); raises `RunInterrupted` after saving a checkpoint on Ctrl-C."""
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    cfg = method.config
    run_dir = Path(run_dir)
    if cfg.torch_threads:  # type: ignore[attr-defined]
        import torch

        torch.set_num_threads(int(cfg.torch_threads))  # type: ignore[attr-defined]
    ckpt = run_dir / "checkpoints"
    resuming = settings.resume and (ckpt / "state.json").exists() and (ckpt / "model.zip").exists()
    state: dict[str, Any] = read_json(ckpt / "state.json") if resuming else {}
    if resuming:
        state["resumes"] = int(state.get("resumes", 0)) + 1
        method.load_state_dict(state.get("method_state") or {})
    history: list[dict[str, Any]] = list(state.get("evals", []))
    cls = learner_class(cfg.learner)  # type: ignore[attr-defined]
    subproc = cfg.vec_env == "subproc"  # type: ignore[attr-defined]
    method.start()
    venv = make_vec_env(
        method.make_env(), n_envs=cfg.n_envs, seed=settings.seed,  # type: ignore[attr-defined]
        vec_env_cls=SubprocVecEnv if subproc else DummyVecEnv,
        vec_env_kwargs={"start_method": "spawn"} if subproc else None,
    )
    venv = method.wrap_vec_env(venv)
    try:
        if resuming:
            model = cls.load(ckpt / "model.zip", env=venv, device="cpu")
            if is_off_policy(model) and (ckpt / "replay_buffer.pkl").exists():
                model.load_replay_buffer(ckpt / "replay_buffer.pkl")
        else:
            kwargs = {**method.learner_defaults(), **cfg.learner_kwargs}  # type: ignore[attr-defined]
            policy_kwargs = {**method.policy_kwargs(), **cfg.policy_kwargs}  # type: ignore[attr-defined]
            if policy_kwargs:
                kwargs["policy_kwargs"] = {**policy_kwargs, **kwargs.get("policy_kwargs", {})}
            try:
                model = cls(method.policy_name(), venv, seed=settings.seed, verbose=0, device="cpu", **kwargs)
            except TypeError as err:
                raise ConfigError(f"learner_kwargs for {cfg.learner} rejected: {err}.") from None  # type: ignore[attr-defined]
        model.set_logger(_logger(run_dir, f"-resume{state['resumes']}" if resuming else ""))
        counter, evaluator, checkpointer = _callbacks(method, settings, run_dir, history, state)
        callbacks = CallbackList([counter, *method.callbacks(), evaluator, checkpointer])
        remaining = int(settings.total_steps or 0) - int(state.get("num_timesteps", 0))
        state["_segment_start"] = start = time.perf_counter()
        try:
            if remaining > 0:
                model.learn(remaining, callback=callbacks, reset_num_timesteps=not resuming,
                            progress_bar=settings.progress)
            else:  # stopped after its last step, before the end-of-run work: the callbacks still need the model
                callbacks.init_callback(model)
        except KeyboardInterrupt:
            checkpointer.save()
            raise RunInterrupted(run_dir, f"step {int(model.num_timesteps):,} of {settings.total_steps:,}", True) from None
        train_s = time.perf_counter() - start
        eval_in_learn = evaluator.seconds  # the final evaluation below is not part of training time
        if not history or history[-1]["steps"] != model.num_timesteps or not history[-1].get("evaluated", True):
            evaluator.num_timesteps = model.num_timesteps
            evaluator.evaluate_now(force=True)
        method.after_training()  # e.g. a background fine-tune stage finishing: its state goes into the checkpoint
        checkpointer.save()
        tmp = run_dir / "model.tmp.zip"
        model.save(tmp)
        os.replace(tmp, run_dir / "model.zip")
    finally:
        venv.close()
    steps_done = int(model.num_timesteps) - int(state.get("num_timesteps", 0))
    return TrainOutcome(
        model=model, steps=int(model.num_timesteps), episodes=counter.episodes,
        train_s=float(state.get("train_s", 0.0)) + train_s, eval_s=evaluator.seconds,
        steps_per_s=steps_done / max(1e-9, train_s - eval_in_learn),
        history=history, final_records=evaluator.final_records, resumes=int(state.get("resumes", 0)),
        earlier_usage=state.get("llm_usage"),
    )
