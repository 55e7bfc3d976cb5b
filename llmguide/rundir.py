"""Run directories: one folder per run holding config, logs, checkpoints, plots and metrics.

Names follow CleanRL's ``env__method__seed__time`` so a folder listing reads
like a table of experiments.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import yaml

__all__ = ["make_run_dir", "write_json", "read_json", "write_yaml", "default_runs_root"]


def default_runs_root() -> Path:
    """``$LLMGUIDE_RUNS_DIR`` or ``./runs``."""
    return Path(os.environ.get("LLMGUIDE_RUNS_DIR", "runs"))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


def make_run_dir(env: str, method: str, seed: int, root: str | Path | None = None) -> Path:
    """Create and return a fresh ``root/env__method__seed__YYYYmmdd-HHMMSS`` folder."""
    root = Path(root) if root is not None else default_runs_root()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = root / f"{_slug(env)}__{_slug(method)}__{seed}__{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically (temp file + rename) so an interrupt never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_yaml(path: str | Path, data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)
    return path
