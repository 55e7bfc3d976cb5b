"""Sweeps on Ray: exports `Trial`, `make_trials`, `parse_seeds`, `trial_resources`, `run_sweep`,
`SweepResult`.

`llmguide sweep CONFIG --seeds 0-9 --grid key=a,b` turns every (arm x grid point x seed) into
one run of the common core (`llmguide.core.prepare` + `run`) and runs them as the trials of one
Ray Tune experiment: on a local Ray instance started for the sweep, or on an existing cluster
(`--address`), with the same code.

Why it is built this way:

- each trial declares what it uses (`trial_resources`): a CPU for the learner, one per subproc
  env, one for an ONI annotator the run starts, a GPU fraction where a local GGUF is offloaded;
  Ray places trials by those figures;
- run dirs live in the sweep dir, which must be a path every node sees; a trial runs in a
  node-local scratch dir and copies it there as it goes, because SQLite (the teacher's answer
  cache, ONI's label store, Chroma's memory) must never be written over a network filesystem;
- a trial that dies (its node lost, an error) is retried a bounded number of times and resumes
  from the last checkpoint copied to the sweep dir; one that still fails is reported as failed,
  never dropped; `Tuner.restore` continues an interrupted sweep without re-running finished
  trials.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmguide.errors import ConfigError

__all__ = ["SweepResult", "Trial", "make_trials", "parse_seeds", "run_sweep", "trial_resources"]

log = logging.getLogger("llmguide.sweep")

#: the sweep's own record of its trials in the sweep dir (what `--resume` reads)
SWEEP_FILE = "sweep.yaml"
#: where a trial notes each attempt (node, pid, time) in its run dir on the shared path
ATTEMPTS_FILE = "sweep_trial.json"
#: Ray Tune's experiment folder inside the sweep dir (what `Tuner.restore` reads)
TUNE_DIR = "tune"
#: file systems on which SQLite and Chroma stores must not live (locking is unreliable there)
NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "ceph", "glusterfs", "beegfs", "9p",
              "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.juicefs", "fuse.glusterfs", "afs", "ncpfs"}


@dataclass
class Trial:
    """One run of a sweep: its name (also its run dir's name), full config and Ray resources."""

    name: str
    config: dict[str, Any]
    resources: dict[str, float] = field(default_factory=dict)


@dataclass
class SweepResult:
    """How each trial ended: `rows` has one entry per trial, status finished, failed or interrupted."""

    sweep_dir: Path
    rows: list[dict[str, Any]]

    @property
    def failed(self) -> list[str]:
        return [r["trial"] for r in self.rows if r["status"] == "failed"]

    @property
    def unfinished(self) -> list[str]:
        return [r["trial"] for r in self.rows if r["status"] not in ("finished", "failed")]


# -- trials --------------------------------------------------------------------------------------
def parse_seeds(text: str) -> list[int]:
    """`0-9`, `0,3,5-7` -> the seeds in that order, each once."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        match = re.fullmatch(r"(-?\d+)(?:\s*-\s*(-?\d+))?", part)
        if match is None:
            raise ConfigError(f"--seeds takes integers and ranges like 0-9 or 0,2,5-7, got {text!r}.")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise ConfigError(f"--seeds range {part!r} runs backwards; write it low-high, e.g. 0-9.")
        seeds += [s for s in range(lo, hi + 1) if s not in seeds]
    if not seeds:
        raise ConfigError(f"--seeds names no seed ({text!r}); e.g. --seeds 0-9.")
    return seeds


def _grid(items: list[str]) -> list[tuple[str, list[Any]]]:
    """`key=a,b` items -> (dotted key, parsed values); values parse as a YAML flow list."""
    import yaml

    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or not raw.strip():
            raise ConfigError(f"--grid expects KEY=V1,V2 (e.g. --grid learner_kwargs.learning_rate=1e-3,3e-4), got {item!r}.")
        try:
            values = yaml.safe_load(f"[{raw}]")
        except yaml.YAMLError:
            values = [v.strip() for v in raw.split(",")]
        out.append((key.strip(), [_number(v) for v in values]))
    return out


def _number(value: Any) -> Any:
    """`3e-4` is a string to YAML 1.1 (PyYAML) but a number to anyone writing a grid."""
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", value.strip()):
        return float(value)
    return value


def _set(config: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--grid {dotted}: {part!r} is not a mapping in this config.")
        node = child
    node[leaf] = value


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", text).strip("-") or "trial"


def trial_resources(prepared: Any, gpu_fraction: float = 0.25) -> dict[str, float]:
    """What one trial occupies: 1 CPU for the learner (its dummy vec envs step in the same process),
    +1 per subproc env, +1 for an ONI annotator the run starts itself, and `gpu_fraction` of a GPU
    when the config offloads a local GGUF (`n_gpu_layers` other than 0 anywhere in it)."""
    cfg = prepared.config
    cpus = 1.0
    if getattr(cfg, "vec_env", None) == "subproc":
        cpus += float(getattr(cfg, "n_envs", 1))
    if prepared.settings.method == "oni" and getattr(cfg, "reward_model", "none") != "none" \
            and getattr(cfg, "annotator_url", None) is None:
        cpus += 1.0
    resources = {"CPU": cpus}
    if _offloads_gguf(prepared.config.model_dump(mode="json")):
        resources["GPU"] = float(gpu_fraction)
    return resources


def _offloads_gguf(node: Any) -> bool:
    if isinstance(node, dict):
        layers = node.get("n_gpu_layers")
        if layers not in (None, 0):
            return True
        return any(_offloads_gguf(v) for v in node.values())
    if isinstance(node, list):
        return any(_offloads_gguf(v) for v in node)
    return False


def make_trials(arms: dict[str, dict[str, Any]], seeds: list[int], grid: list[str] | None = None,
                gpu_fraction: float = 0.25) -> list[Trial]:
    """Every (arm x grid point x seed) as a validated `Trial` (all validated before anything runs).

    `arms` maps an arm name to its full config (one entry for a config without `arms:`).
    """
    from llmguide.core import prepare

    axes = _grid(list(grid or []))
    points = list(itertools.product(*[[(key, v) for v in values] for key, values in axes])) or [()]
    trials, names = [], set()
    for arm, base in arms.items():
        for point in points:
            config = json.loads(json.dumps(base, default=str))  # a deep copy that is also plain data
            for key, value in point:
                _set(config, key, value)
            _check_node_local(config)
            grid_label = "__".join(f"{key.split('.')[-1]}={json.dumps(value)}" for key, value in point)
            for seed in seeds:
                parts = ([arm] if len(arms) > 1 or "arms" in base else []) + ([grid_label] if grid_label else []) + [f"seed{seed}"]
                name = _slug("__".join(parts))
                if name in names:
                    raise ConfigError(f"Two trials would share the name {name!r}; give the grid values distinct spellings.")
                names.add(name)
                run_cfg = {k: v for k, v in config.items() if k != "arms"}
                label = "__".join(p for p in (config.get("name") or (arm if len(arms) > 1 else None), grid_label) if p)
                run_cfg.update(seed=seed, name=label or None)  # the report groups seeds by this label
                run_cfg = {k: v for k, v in run_cfg.items() if v is not None}
                try:
                    prepared = prepare({**run_cfg, "progress": False})
                except ConfigError as err:
                    raise ConfigError(f"trial {name!r}: {err}") from None
                trials.append(Trial(name, run_cfg, trial_resources(prepared, gpu_fraction)))
    return trials


# -- node-local stores ------------------------------------------------------------------------------
def _fs_type(path: Path) -> str | None:
    """The file-system type of the mount holding `path` (Linux /proc/mounts), None where unknown."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best, kind = "", None
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3:
            point = parts[1].replace("\\040", " ")
            if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                best, kind = point, parts[2]
    return kind


def on_network_fs(path: Path) -> bool:
    """Whether `path` (or its nearest existing parent) is on a network file system."""
    path = Path(path).expanduser()
    while not path.exists() and path != path.parent:
        path = path.parent
    return (_fs_type(path) or "") in NETWORK_FS


def _check_node_local(config: dict[str, Any]) -> None:
    """A Chroma memory named in the config must be node-local: refuse one on a network file system."""
    memory = config.get("memory")
    if isinstance(memory, str) and memory.startswith(("http://", "https://")):
        return  # a Chroma server (DiLu `memory: URL`): its store lives on the server's own disk
    if isinstance(memory, str) and memory not in ("true", "false") and on_network_fs(Path(memory)):
        raise ConfigError(f"memory={memory} is on a network file system; Chroma's SQLite store must stay node-local: "
                          "point `memory` at a local disk (or leave it unset: each trial keeps it in its run dir).")


def _node_local_root() -> Path:
    """Scratch space on this node for a running trial (`$LLMGUIDE_SWEEP_SCRATCH`, else the temp dir)."""
    return Path(os.environ.get("LLMGUIDE_SWEEP_SCRATCH") or tempfile.gettempdir())


def _use_node_local_cache() -> None:
    """Point the LLM response cache (SQLite) at a node-local folder if it would be on a network FS."""
    from llmguide.llm.cache import default_cache_path

    if on_network_fs(default_cache_path().parent):
        local = _node_local_root() / "llmguide-cache"
        log.warning("LLM cache %s is on a network file system; this trial uses %s", default_cache_path(), local)
        os.environ["LLMGUIDE_CACHE_DIR"] = str(local)


_LIVE_SKIP = re.compile(r"\.(sqlite3?|db)(-wal|-shm|-journal)?$")


def _sync(src: Path, dst: Path, final: bool) -> None:
    """Copy new or changed files from the node-local run dir to the shared one, each atomically.

    While the run goes on, SQLite files and Chroma folders are left out (a copy of a live database
    can be torn; they are caches and stores the run rebuilds); at the end everything goes.
    """
    for root, dirs, files in os.walk(src):
        here = Path(root)
        if not final and "chroma.sqlite3" in files:
            dirs[:] = []
            continue
        for name in files:
            if name == ATTEMPTS_FILE or name.endswith(".tmp") or ".tmp." in name or (not final and _LIVE_SKIP.search(name)):
                continue
            source = here / name
            target = dst / source.relative_to(src)
            try:
                st = source.stat()
                if target.exists() and target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".sync-tmp")
                shutil.copy2(source, tmp)
                os.replace(tmp, target)
            except FileNotFoundError:  # replaced by the run while we looked: the next pass takes it
                continue


# -- the trainable (runs on a Ray worker) -------------------------------------------------------------
def _progress(run_dir: Path) -> dict[str, Any]:
    """Steps and the latest success figure of a running trial, from the files the core writes."""
    out: dict[str, Any] = {}
    logs = sorted(run_dir.glob("progress*.csv"), key=lambda p: p.stat().st_mtime)
    if logs:
        try:
            with logs[-1].open() as fh:
                rows = list(csv.DictReader(fh))
        except (OSError, csv.Error):
            rows = []
        for row in rows:
            if row.get("time/total_timesteps"):
                out["steps"] = int(float(row["time/total_timesteps"]))
            if row.get("eval/success"):
                out["success"] = float(row["eval/success"])
    episodes = run_dir / "episodes.jsonl"
    if episodes.exists():
        lines = [json.loads(line) for line in episodes.read_text().splitlines() if line.strip().endswith("}")]
        out["steps"] = sum(int(r.get("length", 0)) for r in lines)
        if lines:
            out["success"] = sum(bool(r.get("success")) for r in lines) / len(lines)
    return out


_FINAL_KEYS = ("method", "env", "seed", "label", "status", "steps", "episodes", "success", "score", "return_mean",
               "steps_to_target", "llm_calls", "steps_per_s", "wall_s", "resumes")


def _note_attempt(shared: Path, node: str) -> int:
    """Record this attempt (node, pid, host, time) in the run dir; returns its number (1 = first)."""
    from llmguide.rundir import read_json, write_json

    path = shared / ATTEMPTS_FILE
    attempts = read_json(path)["attempts"] if path.exists() else []
    attempts.append({"node_id": node, "host": socket.gethostname(), "pid": os.getpid(), "started": time.time()})
    write_json(path, {"attempts": attempts})
    return len(attempts)


def sweep_trainable(config: dict[str, Any]) -> None:
    """One trial: one `llmguide.core.run` in node-local scratch, mirrored to the shared run dir,
    with live figures reported to Tune. Resumes from the shared run dir's checkpoint on a retry."""
    import ray
    from ray import tune

    from llmguide.core import prepare, run
    from llmguide.rundir import read_json

    spec = config["trial"]
    shared = Path(spec["run_dir"])
    shared.mkdir(parents=True, exist_ok=True)
    node = ray.get_runtime_context().get_node_id()
    done = shared / "metrics.json"
    if done.exists() and read_json(done).get("status") == "finished":  # finished before a restore: not re-run
        tried = read_json(shared / ATTEMPTS_FILE)["attempts"] if (shared / ATTEMPTS_FILE).exists() else []
        node = tried[-1]["node_id"] if tried else node
        tune.report({"trial": spec["name"], "node_id": node, "attempt": len(tried),
                     **{k: read_json(done).get(k) for k in _FINAL_KEYS}, "done": True})
        return
    attempt = _note_attempt(shared, node)
    base = {"trial": spec["name"], "node_id": node, "attempt": attempt}
    _use_node_local_cache()
    local = Path(tempfile.mkdtemp(prefix=f"{spec['name'][:40]}-", dir=_node_local_root()))
    resume = (shared / "config.yaml").exists()
    if resume:
        shutil.copytree(shared, local, dirs_exist_ok=True, ignore=shutil.ignore_patterns(ATTEMPTS_FILE, "*.sync-tmp"))
    prepared = prepare({**spec["config"], "resume": resume, "progress": False})
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["metrics"] = run(prepared, local).model_dump(mode="json")
        except BaseException as err:  # noqa: BLE001 - re-raised in the trial's own thread below
            outcome["error"] = err

    start = time.perf_counter()
    worker = threading.Thread(target=work, name=f"llmguide-{spec['name']}", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(float(spec.get("report_every", 2.0)))
        if worker.is_alive():
            _sync(local, shared, final=False)
            now = _progress(local)
            steps = now.get("steps", 0)
            tune.report({**base, **now, "steps_per_s": steps / max(1e-9, time.perf_counter() - start), "done": False})
    _sync(local, shared, final=True)
    if "error" in outcome:
        raise outcome["error"]
    shutil.rmtree(local, ignore_errors=True)
    final = {k: outcome["metrics"].get(k) for k in _FINAL_KEYS}
    tune.report({**base, **final, "trial_wall_s": time.perf_counter() - start, "done": True})


def _trial_dirname(trial: Any) -> str:
    return str(trial.config["trial"]["name"])


# -- the live table (runs in the driver) -------------------------------------------------------------
def _live_table_callback(console: Any, names: list[str], every: float) -> Any:
    """A Tune callback that prints (trial, status, node, steps, success, steps/s) every `every` s."""
    from ray.tune import Callback

    class LiveTable(Callback):
        def __init__(self, console: Any, names: list[str], every: float) -> None:
            self.console, self.every = console, every
            self.rows: dict[str, dict[str, Any]] = {n: {"status": "PENDING", "attempts": 0} for n in names}
            self.last = 0.0
            self.changed = False

        def __getstate__(self) -> dict[str, Any]:  # Tune pickles its run config: the console stays behind
            return {**self.__dict__, "console": None}

        def _row(self, trial: Any) -> dict[str, Any]:
            return self.rows.setdefault(_trial_dirname(trial), {"status": "PENDING", "attempts": 0})

        def _mark(self, trial: Any, status: str) -> None:
            self._row(trial)["status"] = status
            self.changed = True

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            row = self._row(trial)
            row["attempts"] += 1
            self._mark(trial, "RUNNING")

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            row = self._row(trial)
            row.update({k: result.get(k) for k in ("steps", "success", "steps_per_s", "node_id") if result.get(k) is not None})
            row["attempts"] = max(row["attempts"], int(result.get("attempt") or 0))
            self.changed = True

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._mark(trial, "RETRYING")

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._mark(trial, "FINISHED")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._mark(trial, "FAILED")

        def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
            for trial in trials:  # Tune's own status is the truth (a restored sweep's finished trials included)
                row = self._row(trial)
                status = {"TERMINATED": "FINISHED", "ERROR": "FAILED"}.get(trial.status, trial.status)
                status = "RETRYING" if status == "PENDING" and row["attempts"] else status
                self.changed |= status != row["status"]
                row["status"] = status
            if self.changed and time.monotonic() - self.last >= self.every:
                self.show()

        def on_experiment_end(self, trials: list, **info: Any) -> None:
            self.show()

        def show(self) -> None:
            from rich.table import Table

            if self.console is None:
                return
            self.last, self.changed = time.monotonic(), False
            table = Table(title=f"sweep · {time.strftime('%H:%M:%S')}")
            for col in ("trial", "status", "try", "node", "steps", "success", "steps/s"):
                table.add_column(col)
            for name, row in self.rows.items():
                success, rate = row.get("success"), row.get("steps_per_s")
                table.add_row(name, row["status"], str(row["attempts"]), str(row.get("node_id") or "-")[:8],
                              str(row.get("steps", "-")), "-" if success is None else f"{success:.2f}",
                              "-" if rate is None else f"{rate:.0f}")
            self.console.print(table)

    return LiveTable(console, names, every)


# -- the sweep (driver) ------------------------------------------------------------------------------
def _quiet_ray_env() -> None:
    """Settings every Ray process of the sweep inherits: no usage stats, no Tune console or loggers of its own."""
    for key, value in {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_IMPORT_WARNING": "1", "RAY_AIR_NEW_OUTPUT": "0",
                       "RAY_DEDUP_LOGS": "0",
                       "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}.items():
        os.environ.setdefault(key, value)


def _connect(address: str | None, num_cpus: int | None) -> None:
    import ray

    _quiet_ray_env()
    # trials that never reported (not started when a sweep was interrupted) are listed by us, not warned about
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address is None:  # the embedded default: a Ray instance of this process, gone when the sweep ends
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except ConnectionError as err:
        raise ConfigError(f"Cannot reach the Ray cluster at {address} ({err}); check the address `ray start --head` "
                          "printed, or drop --address to run on a local Ray instance.") from None


def run_sweep(
    trials: list[Trial] | None,
    sweep_dir: Path,
    *,
    address: str | None = None,
    max_failures: int = 2,
    num_cpus: int | None = None,
    resume: bool = False,
    console: Any = None,
    refresh_s: float = 5.0,
    report_every_s: float = 2.0,
) -> SweepResult:
    """Run `trials` as one Ray Tune experiment in `sweep_dir` (a path every node sees), or continue
    the sweep stored there (`resume`, `trials` None). Writes `sweep.yaml` and each trial's run dir;
    returns how every trial ended."""
    import ray
    import yaml
    from ray import tune

    from llmguide.rundir import write_yaml

    sweep_dir = Path(sweep_dir).resolve()
    if resume:
        if not (sweep_dir / SWEEP_FILE).is_file():
            raise ConfigError(f"{sweep_dir} is not a sweep dir (no {SWEEP_FILE}); give a folder made by `llmguide sweep`.")
        stored = yaml.safe_load((sweep_dir / SWEEP_FILE).read_text())
        trials = [Trial(t["name"], t["config"], t["resources"]) for t in stored["trials"]]
        max_failures = int(stored.get("max_failures", max_failures))
    elif not trials:
        raise ConfigError("A sweep needs at least one trial.")
    else:
        write_yaml(sweep_dir / SWEEP_FILE, {"max_failures": max_failures,
                                            "trials": [{"name": t.name, "config": t.config, "resources": t.resources}
                                                       for t in trials]})
    assert trials is not None
    resources = {t.name: t.resources for t in trials}
    specs = [{"name": t.name, "config": t.config, "run_dir": str(sweep_dir / t.name), "report_every": report_every_s}
             for t in trials]
    trainable = tune.with_resources(sweep_trainable, lambda cfg: resources[cfg["trial"]["name"]])
    callbacks = [_live_table_callback(console, [t.name for t in trials], refresh_s)] if console is not None else []
    _connect(address, num_cpus)
    try:
        tune_path = sweep_dir / TUNE_DIR
        if resume and tune.Tuner.can_restore(str(tune_path)):
            tuner = tune.Tuner.restore(str(tune_path), trainable, resume_unfinished=True, resume_errored=True)
            local_tuner = getattr(tuner, "_local_tuner", None)  # the stored run config has no live table: add this one
            if callbacks and local_tuner is not None:  # (Tuner.restore takes no run config)
                local_tuner.get_run_config().callbacks = callbacks
        else:
            tuner = tune.Tuner(
                trainable,
                param_space={"trial": tune.grid_search(specs)},
                tune_config=tune.TuneConfig(trial_name_creator=_trial_dirname, trial_dirname_creator=_trial_dirname,
                                             reuse_actors=True),  # a warm worker (torch, SB3 imported) takes the next trial
                run_config=tune.RunConfig(
                    name=TUNE_DIR, storage_path=str(sweep_dir), verbose=0, callbacks=callbacks,
                    failure_config=tune.FailureConfig(max_failures=max_failures),
                ),
            )
        grid = tuner.fit()
        rows = _rows(grid, [t.name for t in trials], sweep_dir)
    finally:
        ray.shutdown()
    return SweepResult(sweep_dir, rows)


def _rows(grid: Any, names: list[str], sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per trial, in sweep order: how it ended, where, after how many attempts."""
    from llmguide.rundir import read_json

    by_name: dict[str, Any] = {}
    for result in grid:  # a trial never started (an interrupted sweep) has no config yet: its folder names it
        by_name[str(result.config["trial"]["name"]) if result.config else Path(result.path).name] = result
    rows = []
    for name in names:
        result = by_name.get(name)
        metrics = dict(result.metrics or {}) if result is not None else {}
        attempts_path = sweep_dir / name / ATTEMPTS_FILE
        attempts = read_json(attempts_path)["attempts"] if attempts_path.exists() else []
        if result is not None and result.error is None and metrics.get("done"):
            status, error = "finished", None
        elif result is not None and result.error is not None:
            lines = str(result.error).strip().splitlines() or [""]
            status, error = "failed", f"{type(result.error).__name__}: {lines[-1][:300]}"
        else:
            status, error = "interrupted", None
        rows.append({"trial": name, "status": status, "error": error, "run_dir": str(sweep_dir / name),
                     "attempts": len(attempts), "nodes": [a["node_id"] for a in attempts],
                     **{k: metrics.get(k) for k in _FINAL_KEYS if k != "status"},
                     "trial_wall_s": metrics.get("trial_wall_s")})
    return rows

