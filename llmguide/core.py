"""One footing for every method: exports `prepare`, `run`, `evaluate`, `load_run_config`,
`PreparedRun`.

    config mapping / Experiment(...) / sweep trial
        -> prepare: RunSettings + Method.Config (validated, before any folder is made)
        -> run: train (TrainedMethod) | episode loop (AgentMethod), resumable
        -> RunMetrics -> run_dir/metrics.json -> `llmguide report`

The CLI, `llmguide.Experiment` and the notebooks all call these functions;
no method has a runner of its own.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmguide.config import MethodConfig, RunSettings, split_config
from llmguide.errors import ConfigError
from llmguide.interrupts import interrupt_after
from llmguide.methods import AgentMethod, Method, TrainedMethod, method_class
from llmguide.record import CurvePoint, RunMetrics, llm_figures, run_usage
from llmguide.rundir import read_json, write_json, write_yaml
from llmguide.training import RunInterrupted, evaluate_policy_records, steps_to_target, train

__all__ = ["PreparedRun", "evaluate", "load_run_config", "prepare", "run"]

EPISODES_FILE = "episodes.jsonl"


@dataclass
class PreparedRun:
    """A validated config: the method class, its config and the run settings."""

    method_cls: type[Method]
    settings: RunSettings
    config: MethodConfig
    #: live objects from Python (e.g. a teacher with a custom LLM) used instead of their config form
    objects: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The flat config mapping this run is fully described by (what `config.yaml` holds)."""
        run = self.settings.model_dump(exclude={"resume", "progress"}, exclude_none=True)
        return {**run, **self.config.model_dump(mode="json")}


def prepare(raw: dict[str, Any], objects: dict[str, Any] | None = None) -> PreparedRun:
    """Validate a flat config mapping: method name, run settings, the method's own keys.

    `objects` are live Python objects that stand for config keys of the same name.
    """
    if not isinstance(raw, dict) or "method" not in raw:
        raise ConfigError("A config must be a mapping with a `method` key (e.g. `method: subgoal`).")
    cls = method_class(str(raw["method"]))
    settings, config = split_config(raw, cls.Config)
    return PreparedRun(cls, settings, config, dict(objects or {}))


def load_run_config(path: Path) -> dict[str, Any]:
    """Read a YAML config file into a mapping, with one-line errors for the usual mistakes."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"Config file not found: {path}.")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML ({err}).") from None
    if not isinstance(config, dict) or "method" not in config:
        raise ConfigError(f"{path} must be a mapping with a `method` key (e.g. `method: subgoal`).")
    return config


# -- the run ------------------------------------------------------------------------------------
def run(prepared: PreparedRun, run_dir: Path) -> RunMetrics:
    """Run a prepared config in `run_dir` (continuing it when `settings.resume`); writes and returns
    the run's `RunMetrics`. Ctrl-C raises `RunInterrupted` after saving what a resume needs."""
    from llmguide.llm import METER

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "config.yaml").exists():
        write_yaml(run_dir / "config.yaml", prepared.to_dict())
    method = prepared.method_cls(prepared.config, prepared.settings, run_dir, prepared.objects)
    METER.reset()
    start = time.perf_counter()
    try:
        if isinstance(method, TrainedMethod):
            metrics = _run_trained(method, run_dir)
        elif isinstance(method, AgentMethod):
            metrics = _run_agent(method, run_dir, start)
        else:  # pragma: no cover - a plug-in that subclassed Method directly
            raise ConfigError(f"Method {method.name!r} must subclass TrainedMethod or AgentMethod.")
    except BaseException:
        _close_quietly(method)  # a Ctrl-C may have killed the method's servers too: the interrupt is the news
        raise
    method.close()
    metrics.extras["plot"] = _plot_curve(metrics, run_dir / "learning_curve.png")
    write_json(run_dir / "metrics.json", metrics.model_dump(mode="json"))
    return metrics


def _close_quietly(method: Method) -> None:
    """Close a method while another exception is on its way out; a failure here is logged, not raised."""
    import logging

    try:
        method.close()
    except Exception as err:  # noqa: BLE001 - anything close() raises would hide the real exception
        logging.getLogger("llmguide").warning("closing %s after an error failed too: %s", method.name, err)


def _plot_curve(metrics: RunMetrics, path: Path) -> str | None:
    """The run's own learning curve as a PNG (success where measured, else score, else return)."""
    from llmguide.plots import plot_curves

    for key in ("success", "score", "return_mean"):
        points = [(p.steps, getattr(p, key)) for p in metrics.curve if getattr(p, key) is not None]
        if points:
            title = f"{metrics.env} · {metrics.label}"
            xlabel = "environment steps" + (" (evaluated without the LLM)" if metrics.kind == "trained" else "")
            return str(plot_curves({metrics.label: ([x for x, _ in points], [y for _, y in points])}, path,
                                   title=title, ylabel=key, xlabel=xlabel))
    return None


def _llm_part(method: Method, steps: int, earlier: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    usage = run_usage(method, earlier)
    return {**llm_figures(usage, steps), "invalid_actions": method.invalid_actions()}, usage


def _run_trained(method: TrainedMethod, run_dir: Path) -> RunMetrics:
    outcome = train(method, method.settings, run_dir)
    last = outcome.history[-1] if outcome.history else {}
    ev = method.config.eval  # type: ignore[attr-defined]
    llm, usage = _llm_part(method, outcome.steps, outcome.earlier_usage)
    curve = [CurvePoint(steps=int(h["steps"]), success=h.get("success"), score=h.get("score"),
                        return_mean=h.get("return_mean"), evaluated=bool(h.get("evaluated", True)))
             for h in outcome.history]
    return RunMetrics(
        method=method.name, kind="trained", env=method.config.env, seed=method.settings.seed, label=method.label(),
        steps=outcome.steps, episodes=outcome.episodes, wall_s=outcome.train_s, steps_per_s=outcome.steps_per_s,
        success=last.get("success"), score=last.get("score"), return_mean=last.get("return_mean"),
        steps_to_target=steps_to_target(outcome.history, ev.target, ev.window), resumes=outcome.resumes,
        curve=curve, extras={**method.extras(), "llm_usage": usage, "eval_s": outcome.eval_s,
                             "target": ev.target, "model": str(run_dir / "model.zip")},
        **llm,
    )


def _recorded_episodes(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill: that episode runs again
                break
    return rows


def _run_agent(method: AgentMethod, run_dir: Path, start: float) -> RunMetrics:
    from tqdm.auto import tqdm

    from llmguide.agents.loop import EpisodeRecord, run_episodes

    settings = method.settings
    path = run_dir / EPISODES_FILE
    done_rows = _recorded_episodes(path) if settings.resume else []
    if not settings.resume and path.exists():
        path.unlink()
    state_path = run_dir / "checkpoints" / "state.json"
    state = read_json(state_path) if settings.resume and state_path.exists() else {}
    resumes = int(state.get("resumes", 0)) + (1 if settings.resume else 0)
    if state.get("method_state"):
        method.load_state_dict(state["method_state"])
    agent = method.build()
    plans = method.plan(int(settings.episodes or 1), settings.seed)
    if done_rows:
        method.on_resume(len(done_rows))
    records = [EpisodeRecord(**row) for row in done_rows]
    max_steps = method.config.max_steps  # type: ignore[attr-defined]
    bar = tqdm(total=len(plans), initial=len(records), desc=method.name, unit="episode", disable=not settings.progress)
    seconds_before = float(state.get("wall_s", 0.0))
    try:
        for plan in plans[len(records):]:
            # Ctrl-C anywhere in an episode, or held until its record and state are written (and
            # raised then), leaves the run resumable: what is on disk is whole.
            try:
                env = method.env_for(plan)
                (record,) = run_episodes(agent, env, 1, seed=plan.seed, max_steps=max_steps, progress=False,
                                         success_fn=method.success, extra_fn=method.episode_extra)
                if plan.tag:
                    record.extra.setdefault("tag", plan.tag)
                with interrupt_after():  # the episode's record and the state that counts it land together
                    records.append(record)
                    with path.open("a") as fh:
                        fh.write(json.dumps(record.as_dict(), default=str) + "\n")
                    write_json(state_path, {"episodes": len(records), "method_state": method.state_dict(),
                                            "resumes": resumes, "wall_s": seconds_before + time.perf_counter() - start,
                                            "llm_usage": run_usage(method, state.get("llm_usage"))})
                bar.update(1)
            except KeyboardInterrupt:
                raise RunInterrupted(run_dir, f"{len(records)} of {len(plans)} episodes done", True) from None
    finally:
        bar.close()
    steps = sum(r.length for r in records)
    wall = seconds_before + time.perf_counter() - start
    llm, usage = _llm_part(method, steps, state.get("llm_usage"))
    return RunMetrics(
        method=method.name, kind="agent", env=method.config.env, seed=settings.seed, label=method.label(),
        steps=steps, episodes=len(records), wall_s=wall, steps_per_s=steps / max(1e-9, sum(r.seconds for r in records)),
        success=float(np.mean([r.success for r in records])) if records else None, score=method.score(records),
        return_mean=float(np.mean([r.episode_return for r in records])) if records else None, resumes=resumes,
        curve=[CurvePoint(steps=sum(r.length for r in records[: i + 1]), success=float(r.success),
                          return_mean=r.episode_return) for i, r in enumerate(records)],
        extras={**method.extras(), "llm_usage": usage, "seconds_per_step": sum(r.seconds for r in records) / max(steps, 1)},
        **llm,
    )


# -- evaluation -----------------------------------------------------------------------------
def evaluate(run_dir: Path, episodes: int = 20, deterministic: bool | None = None) -> dict[str, Any]:
    """`llmguide eval RUN_DIR`: a trained policy on the plain env (no LLM), or an LLM agent re-run on
    fixed evaluation seeds. Writes `eval.json` (summary + one record per episode) and returns it."""
    from llmguide.agents.loop import run_episodes

    if episodes <= 0:
        raise ConfigError(f"--episodes must be positive, got {episodes}.")
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise ConfigError(f"{run_dir} is not a run dir (no config.yaml); give a folder made by `llmguide run`.")
    raw = load_run_config(run_dir / "config.yaml")
    prepared = prepare({**raw, "resume": False})
    eval_seed = prepared.settings.seed + 1_000_003
    method = prepared.method_cls(prepared.config, prepared.settings, run_dir)
    try:
        if isinstance(method, TrainedMethod):
            path = next((p for p in (run_dir / "model.zip", run_dir / "checkpoints" / "model.zip") if p.exists()), None)
            if path is None:
                raise ConfigError(f"{run_dir} holds no trained model (model.zip or checkpoints/model.zip); "
                                  f"finish it with `llmguide run --resume {run_dir}`.")
            from llmguide.learners import learner_class

            model = learner_class(prepared.config.learner).load(path, device="cpu")  # type: ignore[attr-defined]
            det = prepared.config.eval.deterministic if deterministic is None else deterministic  # type: ignore[attr-defined]
            records = evaluate_policy_records(model, method, episodes, seed=eval_seed,
                                              n_envs=prepared.config.eval.n_envs, deterministic=det)  # type: ignore[attr-defined]
            used = {"model": str(path), "llm_used": False, "deterministic": det}
        else:
            state_path = run_dir / "checkpoints" / "state.json"
            if state_path.exists():  # what the run learned (e.g. an in-process memory) is what gets evaluated
                method.load_state_dict(read_json(state_path).get("method_state") or {})
            agent = method.build(for_eval=True)
            records = []
            for plan in method.plan(episodes, eval_seed):
                records += run_episodes(agent, method.env_for(plan), 1, seed=plan.seed, progress=False,
                                        max_steps=prepared.config.max_steps,  # type: ignore[attr-defined]
                                        success_fn=method.success, extra_fn=method.episode_extra)
            used = {"llm_used": True}
    except BaseException:
        _close_quietly(method)
        raise
    method.close()
    out = {
        "method": method.name, "env": prepared.config.env, "episodes": len(records), "seed": eval_seed, **used,
        "success": float(np.mean([r.success for r in records])),
        "return_mean": float(np.mean([r.episode_return for r in records])),
        "length_mean": float(np.mean([r.length for r in records])),
        "score": method.score(records),
        "records": [r.as_dict() for r in records],
    }
    write_json(run_dir / "eval.json", out)
    return out
