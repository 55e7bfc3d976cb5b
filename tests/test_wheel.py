"""The wheel is the library: built from the repository, installed on its own and
used from a folder outside the repository, it imports every subpackage, finds the
packaged SPRING DAG and runs `llmguide run` for a trained method and an LLM agent,
without reading a single file of the source tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

#: pyproject.toml's [tool.setuptools.package-dir]: the top-level folders install under llmguide.
PACKAGE_DIRS = {
    "llmguide": "llmguide",
    "llmguide.teachers": "teachers",
    "llmguide.agents": "agents",
    "llmguide.envs": "envs",
    "llmguide.memory": "memory",
}

#: Package data: files other than modules that the library reads at run time.
PACKAGE_DATA = ["llmguide/teachers/data/spring_dag.yaml", "llmguide/teachers/data/crafter_notes.tex"]

#: What the wheel needs to build: nothing else of the repository is copied.
BUILD_INPUTS = ["pyproject.toml", "README.md", *PACKAGE_DIRS.values()]

# Run from the installed copy with an audit hook that fails on any file opened in
# the repository (its .venv aside: the interpreter and the dependencies live there).
RUNNER = r"""
import os, runpy, sys
root, venv = sys.argv[1], os.path.join(sys.argv[1], ".venv")
touched = []

def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(args[0]))
        if (path == root or path.startswith(root + os.sep)) and not path.startswith(venv + os.sep):
            touched.append(path)

sys.addaudithook(hook)
sys.argv = ["llmguide", *sys.argv[2:]]
try:
    runpy.run_module("llmguide.cli", run_name="__main__")
except SystemExit as stop:
    code = stop.code
else:
    code = 0
if touched:
    print("READ FROM THE SOURCE TREE:", *sorted(set(touched)), sep="\n  ", file=sys.stderr)
    code = code or 3
sys.exit(code)
"""


def _source_packages() -> dict[str, Path]:
    """Every package of the source tree (a folder with an __init__.py), by its installed name."""
    found = {}
    for name, folder in PACKAGE_DIRS.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if "__pycache__" in rel.parts:
                continue
            found[".".join([name, *rel.parts])] = init.parent
    return found


def _source_modules() -> set[str]:
    """The wheel path of every module of the source tree's packages."""
    modules = set()
    for name, folder in _source_packages().items():
        prefix = name.replace(".", "/")
        modules |= {f"{prefix}/{py.name}" for py in folder.glob("*.py")}
    return modules


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Build the wheel from a copy of the build inputs (the repository gets no build/ or egg-info)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for item in BUILD_INPUTS:
        path = ROOT / item
        if path.is_dir():
            shutil.copytree(path, src / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(path, src / item)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
                           capture_output=True, text=True, cwd=tmp, timeout=600, check=False)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("llmguide-*.whl")
    site = tmp / "site"
    installed = subprocess.run([*pip, "install", "--no-deps", "--no-compile", "--target", str(site), str(wheel)],
                               capture_output=True, text=True, cwd=tmp, timeout=300, check=False)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    work = tmp / "work"  # the cwd of every command: outside the repository, nothing in it to import
    work.mkdir()
    return {"wheel": wheel, "site": site, "work": work}


def _env(wheel_dir: dict[str, Path]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LLMGUIDE_"))}
    env.update(
        PYTHONPATH=str(wheel_dir["site"]),  # ahead of site-packages, where the editable install's finder sits
        PYTHONNOUSERSITE="1",
        PYTHONDONTWRITEBYTECODE="1",
        LLMGUIDE_CACHE_DIR=str(wheel_dir["work"] / "cache"),
        LLMGUIDE_RUNS_DIR=str(wheel_dir["work"] / "runs"),
        MPLBACKEND="Agg",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_WAIT_POLICY="PASSIVE",
    )
    return env


def _python(wheel_dir: dict[str, Path], *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-P", *args], cwd=wheel_dir["work"], env=_env(wheel_dir),
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_wheel_holds_every_package_module_and_data_file(wheel_dir: dict[str, Path]) -> None:
    names = set(zipfile.ZipFile(wheel_dir["wheel"]).namelist())
    missing = sorted((_source_modules() | set(PACKAGE_DATA)) - names)
    assert not missing, f"not in the wheel (pyproject.toml [tool.setuptools] packages / package-data): {missing}"
    top = {name.split("/", 1)[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"llmguide"}, top  # no top-level agents/envs/memory
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "llmguide = llmguide.cli:app" in zipfile.ZipFile(wheel_dir["wheel"]).read(entry_points).decode()
    site = {p.name for p in wheel_dir["site"].iterdir()}
    assert {p for p in site if not p.endswith(".dist-info")} - {"bin"} == {"llmguide"}, site


def test_installed_package_imports_every_subpackage_and_loads_the_dag(wheel_dir: dict[str, Path]) -> None:
    packages = sorted(_source_packages())
    assert {"llmguide.llm", "llmguide.teachers.oni", "llmguide.agents", "llmguide.envs", "llmguide.memory"} <= set(packages)
    code = (
        "import importlib, json, sys\n"
        f"mods = {{n: importlib.import_module(n).__file__ for n in {packages!r}}}\n"
        "from llmguide.teachers.spring import DEFAULT_DAG_PATH, load_dag\n"
        "dag = load_dag()\n"
        "print(json.dumps({'files': mods, 'dag': str(DEFAULT_DAG_PATH), 'nodes': list(dag.order), 'final': dag.final}))\n"
    )
    result = _python(wheel_dir, "-c", code, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    site = str(wheel_dir["site"].resolve()) + os.sep
    outside = {n: f for n, f in report["files"].items() if not str(Path(f).resolve()).startswith(site)}
    assert not outside, f"imported from outside the installed wheel: {outside}"
    assert report["dag"].startswith(site)
    assert len(report["nodes"]) >= 2 and report["final"] in report["nodes"]


def _run(wheel_dir: dict[str, Path], config: str, *overrides: str) -> dict:
    """`llmguide run CONFIG` from the installed wheel, on a copy of a shipped config; its metrics.json."""
    copy = wheel_dir["work"] / Path(config).name
    shutil.copy2(ROOT / config, copy)
    runs = wheel_dir["work"] / f"runs-{copy.stem}"
    args = ["run", str(copy), "--no-progress", "--runs-dir", str(runs)]
    for item in overrides:
        args += ["--set", item]
    result = _python(wheel_dir, "-c", RUNNER, str(ROOT), *args)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    return json.loads((run_dir / "metrics.json").read_text())


def test_installed_wheel_trains_a_guided_learner(wheel_dir: dict[str, Path]) -> None:
    assert yaml.safe_load((ROOT / "configs" / "minigrid_doorkey.yaml").read_text())["method"] == "subgoal"
    metrics = _run(
        wheel_dir, "configs/minigrid_doorkey.yaml",
        "total_steps=256", "n_envs=2", "teacher.type=oracle", "eval.every=0", "eval.episodes=2",
        "checkpoint_every=128", "learner_kwargs={n_steps: 64, batch_size: 64, n_epochs: 1}", "policy_kwargs.net_arch=[16]",
    )
    assert metrics["method"] == "subgoal" and metrics["steps"] >= 256


def test_installed_wheel_runs_an_llm_agent_with_the_packaged_dag(wheel_dir: dict[str, Path]) -> None:
    assert yaml.safe_load((ROOT / "configs" / "spring_crafter.yaml").read_text())["dag"] is None  # the packaged default
    # A one-line context instead of the Crafter manual (read from the crafter package) keeps
    # the prompts short: what is under test is the packaged DAG and the installed agent.
    metrics = _run(wheel_dir, "configs/spring_crafter.yaml", "episodes=1", "max_steps=1",
                   "context=You play Crafter, a 2D survival game. Collect, craft and survive.")
    assert metrics["steps"] == 1
    assert metrics["invalid_actions"] == 0
