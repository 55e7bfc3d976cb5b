"""One registry for the language views: exports `make`, `list_envs`, `ENVS`, `register_envs`.

`make(id, text=True, **kw)` accepts any MiniGrid/BabyAI id, any NLE id,
highway-env ids whose action type is the discrete meta-action set, and our
adapters `llmguide/Crafter-v0` and `llmguide/ScienceWorld-v0`. Every id in
`ENVS` is also a Gymnasium id under the `llmguide/` namespace
(`gymnasium.make("llmguide/MiniGrid-DoorKey-8x8-v0")` gives the text view;
pass `text=False` for the bare env). The environment packages are imported
only when an env of theirs is made.

The chain is built once. A family builder makes the env from its own entry
point (never through `gymnasium.make`), capped by one `TimeLimit` at the
env's real episode cap, under the view; `make` returns that, and
`gymnasium.make("llmguide/...")` adds its checker and order enforcing on
top, once. So `spec.max_episode_steps` is the cap the env really has (None
for the envs without a step cap: merge-v0, ScienceWorld). Passing
`max_episode_steps=N` to `gymnasium.make` adds its own `TimeLimit` on top,
to end episodes sooner.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import shutil
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym

from llmguide.errors import EnvNotFoundError, MissingDependencyError

__all__ = ["ENVS", "NAMESPACE", "EnvInfo", "family_of", "list_envs", "make", "register_envs"]

NAMESPACE = "llmguide"


@dataclass(frozen=True)
class EnvInfo:
    """A curated env: what `llmguide envs` lists and the test suite runs."""

    id: str  #: Gymnasium id (under the llmguide/ namespace)
    base_id: str  #: the id of the underlying env (same as `id` for our adapters)
    family: str
    description: str


# family -> (module with make_<family>, pip package, import name)
_FAMILIES: dict[str, tuple[str, str, str]] = {
    "minigrid": ("llmguide.envs.minigrid", "minigrid", "minigrid"),
    "crafter": ("llmguide.envs.crafter", "crafter", "crafter"),
    "nethack": ("llmguide.envs.nethack", "nle", "nle"),
    "scienceworld": ("llmguide.envs.scienceworld", "scienceworld", "scienceworld"),
    "highway": ("llmguide.envs.highway", "highway-env", "highway_env"),
}

_HIGHWAY_PREFIXES = (
    "highway",
    "merge",
    "intersection",
    "roundabout",
    "two-way",
    "u-turn",
    "exit",
    "racetrack",
    "lane-keeping",
    "parking",
)

_CURATED: tuple[tuple[str, str, str], ...] = (
    ("MiniGrid-Empty-5x5-v0", "minigrid", "empty room, reach the goal"),
    ("MiniGrid-DoorKey-8x8-v0", "minigrid", "pick up the key, unlock the door, reach the goal"),
    ("MiniGrid-Unlock-v0", "minigrid", "open the locked door"),
    ("MiniGrid-KeyCorridorS3R3-v0", "minigrid", "find the key, unlock a room, pick up the ball"),
    ("MiniGrid-MultiRoom-N2-S4-v0", "minigrid", "cross a chain of rooms through doors"),
    ("MiniGrid-ObstructedMaze-1Dlhb-v0", "minigrid", "key hidden in a box, door blocked by a ball"),
    ("BabyAI-GoToLocal-v0", "minigrid", "BabyAI: go to an object in one room"),
    ("BabyAI-PickupLoc-v0", "minigrid", "BabyAI: pick up an object described by location"),
    ("llmguide/Crafter-v0", "crafter", "Crafter survival world, 22 achievements (adapter)"),
    ("NetHackScore-v0", "nethack", "NetHack, reward = in-game score"),
    ("NetHackChallenge-v0", "nethack", "NetHack challenge setting, full action set"),
    ("llmguide/ScienceWorld-v0", "scienceworld", "ScienceWorld text tasks (Java; adapter)"),
    ("highway-v0", "highway", "multi-lane highway driving"),
    ("highway-fast-v0", "highway", "multi-lane highway, faster simulation"),
    ("merge-v0", "highway", "highway with a merging on-ramp"),
    ("intersection-v0", "highway", "unsignalised intersection"),
)


def _gym_id(base_id: str) -> str:
    return base_id if base_id.startswith(f"{NAMESPACE}/") else f"{NAMESPACE}/{base_id}"


ENVS: tuple[EnvInfo, ...] = tuple(EnvInfo(_gym_id(b), b, f, d) for b, f, d in _CURATED)


def family_of(env_id: str) -> str | None:
    """The family an id belongs to, by its name alone (nothing is imported)."""
    name = env_id.split("/", 1)[1] if env_id.startswith(f"{NAMESPACE}/") else env_id
    low = name.lower()
    if low.startswith(("minigrid-", "babyai-")):
        return "minigrid"
    if low.startswith("crafter"):
        return "crafter"
    if low.startswith("nethack"):
        return "nethack"
    if low.startswith("scienceworld"):
        return "scienceworld"
    if low.startswith(_HIGHWAY_PREFIXES):
        return "highway"
    return None


def _installed(family: str) -> bool:
    ok = importlib.util.find_spec(_FAMILIES[family][2]) is not None
    if family == "scienceworld":
        ok = ok and shutil.which("java") is not None
    return ok


def list_envs() -> list[dict[str, Any]]:
    """The curated ids with family, description and whether their package is installed."""
    return [{**asdict(e), "installed": _installed(e.family)} for e in ENVS]


def _candidates() -> list[str]:
    ids = {e.id for e in ENVS} | {e.base_id for e in ENVS}
    ids |= set(gym.registry.keys())
    return sorted(ids)


def _not_found(env_id: str, family: str | None = None) -> EnvNotFoundError:
    pool = _candidates()
    if family is not None:
        # The family's ids are registered now; compare against those first.
        pool = [i for i in pool if family_of(i) == family] or pool
    close = difflib.get_close_matches(env_id, pool, n=5, cutoff=0.5)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    return EnvNotFoundError(f"Unknown environment id {env_id!r}.{hint} Run `llmguide envs` to list the ids.")


def _import_family(family: str) -> Any:
    module, pip_name, import_name = _FAMILIES[family]
    if importlib.util.find_spec(import_name) is None:
        raise MissingDependencyError(
            f"The {family} environments need the '{pip_name}' package; install it with `pip install {pip_name}`."
        )
    return importlib.import_module(module)


def make(env_id: str, text: bool = True, **kwargs: Any) -> gym.Env:
    """Make an environment by id, with its language view in `info` unless `text=False`.

    The view is the outermost wrapper (its methods, e.g. ScienceWorld's
    `step_command`, are called on the result); `gymnasium.make("llmguide/<id>")`
    gives the same chain under gymnasium's checker and order enforcing.

    Example:
        >>> env = make("MiniGrid-DoorKey-5x5-v0")
        >>> obs, info = env.reset(seed=0)
        >>> "key" in info["text"]
        True
    """
    family = family_of(env_id)
    if family is None:
        raise _not_found(env_id)
    module = _import_family(family)
    base_id = env_id.split("/", 1)[1] if env_id.startswith(f"{NAMESPACE}/") else env_id
    builder = getattr(module, f"make_{family}")
    try:
        return builder(base_id, text=text, **kwargs)
    except (gym.error.UnregisteredEnv, gym.error.DeprecatedEnv) as exc:
        raise _not_found(env_id, family) from exc


def _entry(base_id: str, text: bool = True, **kwargs: Any) -> gym.Env:
    """Gymnasium entry point of every llmguide/ id: `make` (the view unless text=False).

    The family builders make the env without `gym.make`, so the `gym.make`
    that calls this entry point is the only one to add its wrappers.
    """
    return make(base_id, text=text, **kwargs)


def register_envs() -> None:
    """Register the curated `llmguide/...` Gymnasium ids (idempotent, imports nothing heavy)."""
    for e in ENVS:
        if e.id in gym.registry:
            continue
        gym.register(e.id, entry_point=f"{__name__}:_entry", kwargs={"base_id": e.base_id})


register_envs()
