"""Planning on a MiniGrid/BabyAI grid for teachers: exports `Target`, `minigrid_base`,
`agent_cell`, `grid_objects`, `shortest_path`, `layout_targets`, `plan_next`,
`symbolic_state`, `layout_digest`, `relative_text`.

Why a module of its own: the teacher protocol (`llmguide.teachers.base`) is
about subgoals, proposals and caching, whatever the env; what a subgoal may
name in a MiniGrid layout, and how the oracle plans there (breadth-first
search on the true grid), is MiniGrid knowledge. Teachers, the guidance
wrappers and the benchmarks read the grid only through these functions.

Example:
    >>> import gymnasium as gym, minigrid  # doctest: +SKIP
    >>> env = gym.make("MiniGrid-DoorKey-5x5-v0"); _ = env.reset(seed=0)  # doctest: +SKIP
    >>> plan_next(env).instruction  # doctest: +SKIP
    'pick up the yellow key'
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
from llmguide.teachers.base import DEFAULT_VERB, TARGET_TYPES, Subgoal

__all__ = [
    "Target",
    "agent_cell",
    "grid_objects",
    "layout_digest",
    "layout_targets",
    "minigrid_base",
    "plan_next",
    "relative_text",
    "shortest_path",
    "symbolic_state",
]

Cell = tuple[int, int]
#: Objects a path may cross when `through_objects` is set: they can be picked up and moved.
_PICKABLE = ("key", "ball", "box")


@dataclass(frozen=True)
class Target:
    """An object in the layout a subgoal may name, with where to stand to reach it."""

    verb: str
    type: str
    colour: str | None
    cell: Cell
    approach: Cell | None  # the cell from which it is reached (None: unreachable)

    @property
    def name(self) -> str:
        return self.type if self.colour is None else f"{self.colour} {self.type}"

    @property
    def instruction(self) -> str:
        return f"{self.verb} the {self.name}"

    def as_subgoal(self, kind: str, agent_pos: Cell | None = None) -> Subgoal:
        """This target expressed as a subgoal of `kind`."""
        if kind == "object":
            return Subgoal("object", self.name, obj=(self.type, self.colour), verb=self.verb)
        if kind == "language":
            return Subgoal("language", self.instruction, obj=(self.type, self.colour), verb=self.verb)
        if kind == "positional":
            cell = self.approach or self.cell
            return Subgoal("positional", relative_text(cell, agent_pos), cell=cell)
        raise ValueError(f"unknown subgoal kind {kind!r}")


def relative_text(cell: Cell, agent_pos: Cell | None) -> str:
    """'(+2, -1)': columns east, rows south of the agent."""
    ax, ay = agent_pos or (0, 0)
    return f"({cell[0] - ax:+d}, {cell[1] - ay:+d})"


# -- reading the grid ----------------------------------------------------------
def minigrid_base(env: gym.Env) -> Any:
    """The MiniGrid env under any wrappers, or None when it is not one."""
    base = getattr(env, "unwrapped", env)
    return base if hasattr(base, "grid") and hasattr(base, "agent_pos") else None


def agent_cell(base: Any) -> Cell:
    """The agent's (x, y) as plain ints (MiniGrid may hold numpy ints)."""
    return (int(base.agent_pos[0]), int(base.agent_pos[1]))


def grid_objects(base: Any) -> Iterator[tuple[int, int, Any]]:
    """(x, y, object) for every non-empty cell, column by column (a stable order)."""
    grid = base.grid
    for x in range(grid.width):
        for y in range(grid.height):
            obj = grid.get(x, y)
            if obj is not None:
                yield x, y, obj


def _neighbours(x: int, y: int) -> tuple[Cell, ...]:
    return ((x + 1, y), (x, y + 1), (x - 1, y), (x, y - 1))


def shortest_path(
    base: Any, start: Cell, goal: Cell, door_ok: Callable[[Any], bool], through_objects: bool = False
) -> list[Cell] | None:
    """Shortest 4-connected path start..goal (both included) by breadth-first search, or None.

    `door_ok(door)` says whether a door may be crossed; `through_objects` lets
    the path cross keys/balls/boxes (they can be picked up and moved). The
    goal cell itself is always enterable, whatever stands there.
    """
    grid = base.grid
    prev: dict[Cell, Cell | None] = {start: None}
    queue = deque([start])
    while queue:
        cur = queue.popleft()
        if cur == goal:
            path = [cur]
            while prev[path[-1]] is not None:
                path.append(prev[path[-1]])  # type: ignore[arg-type]
            return path[::-1]
        for nxt in _neighbours(*cur):
            if nxt in prev or not (0 <= nxt[0] < grid.width and 0 <= nxt[1] < grid.height):
                continue
            obj = grid.get(*nxt)
            if nxt != goal and obj is not None:
                if obj.type == "door":
                    if not door_ok(obj):
                        continue
                elif not obj.can_overlap() and not (through_objects and obj.type in _PICKABLE):
                    continue
            prev[nxt] = cur
            queue.append(nxt)
    return None


def _any_door(door: Any) -> bool:
    return True


def layout_targets(env: gym.Env, approach: bool = True) -> list[Target]:
    """Every object a subgoal may name now: keys/balls/boxes lying in the grid,
    doors not yet open, the goal. Sorted for stable prompts.

    ``approach=False`` skips the path search for each target's approach cell (left None):
    only positional subgoals need it, and it is most of the cost of a question."""
    base = minigrid_base(env)
    if base is None:
        return []
    start = agent_cell(base)
    out = []
    for x, y, obj in grid_objects(base):
        if obj.type not in TARGET_TYPES or (obj.type == "door" and obj.is_open):
            continue
        colour = None if obj.type == "goal" else obj.color
        if obj.type == "goal":
            near: Cell | None = (x, y)
        elif not approach:
            near = None
        else:
            path = shortest_path(base, start, (x, y), _any_door) or shortest_path(base, start, (x, y), _any_door, True)
            near = path[-2] if path and len(path) >= 2 else None
        out.append(Target(DEFAULT_VERB[obj.type], obj.type, colour, (x, y), near))
    out.sort(key=lambda t: (TARGET_TYPES.index(t.type), t.colour or "", t.cell))
    return out


# -- the oracle's plan -----------------------------------------------------------
_MISSION_OBJ = re.compile(r"(pick up|go to|get to|open) (?:the |a )?(?:(\w+) )?(key|ball|box|door|goal)")


def _final_target(base: Any) -> tuple[str, Any, Cell] | None:
    """(verb, object, cell) that completes the mission, or None if not understood."""
    mission = str(base.mission)
    found = None if re.search(r"\bgoal\b", mission) else _MISSION_OBJ.search(mission)
    want = None
    if found and found.group(3) != "goal":
        verb = "pick up" if found.group(1) == "pick up" else ("open" if found.group(1) == "open" else "go to")
        want = (verb, found.group(3), found.group(2))
    for x, y, obj in grid_objects(base):
        if want is None and obj.type == "goal":
            return ("go to", obj, (x, y))
        if want is not None and obj.type == want[1] and (want[2] in (None, obj.color)):
            return (want[0], obj, (x, y))
    return None


def plan_next(env: gym.Env) -> Target | None:
    """The oracle's next step towards the mission, by BFS on the true grid.

    Cross closed doors by opening them; cross a locked door only with its
    key, else fetch that key first (opening doors on the way). DoorKey gives
    key -> door -> goal; MultiRoom one door after another; KeyCorridor
    door(s) -> key -> locked door -> ball.
    """
    base = minigrid_base(env)
    if base is None:
        return None
    final = _final_target(base)
    if final is None:
        return None
    verb, obj, cell = final
    start = agent_cell(base)
    carrying = base.carrying

    def has_key(door: Any) -> bool:
        return carrying is not None and carrying.type == "key" and carrying.color == door.color

    def usable(door: Any) -> bool:
        return (not door.is_locked) or has_key(door)

    def step_on(path: list[Cell], end: Target) -> Target:
        for i, c in enumerate(path[1:-1], start=1):
            d = base.grid.get(*c)
            if d is not None and d.type == "door" and not d.is_open:
                return Target("open", "door", d.color, c, path[i - 1])
        return end

    def end_target(v: str, o: Any, c: Cell, path: list[Cell]) -> Target:
        colour = None if o.type == "goal" else o.color
        approach = c if o.type == "goal" else (path[-2] if len(path) >= 2 else None)
        return Target(v, o.type, colour, c, approach)

    path = shortest_path(base, start, cell, usable) or shortest_path(base, start, cell, usable, True)
    if path is not None:
        return step_on(path, end_target(verb, obj, cell, path))
    path = shortest_path(base, start, cell, _any_door, True)
    if path is None:
        return None
    for c in path[1:-1]:
        door = base.grid.get(*c)
        if door is not None and door.type == "door" and door.is_locked and not has_key(door):
            key_cell = next(
                ((x, y) for x, y, o in grid_objects(base) if o.type == "key" and o.color == door.color), None
            )
            if key_cell is None:
                return None
            kpath = shortest_path(base, start, key_cell, usable) or shortest_path(base, start, key_cell, usable, True)
            if kpath is None:
                return None
            return step_on(kpath, end_target("pick up", base.grid.get(*key_cell), key_cell, kpath))
    return None


# -- what a cached answer may depend on ---------------------------------------------
def symbolic_state(env: gym.Env, achieved: Sequence[Subgoal] = ()) -> dict[str, Any]:
    """Position-free summary of the situation: what a cached answer may depend on."""
    base = minigrid_base(env)
    objects = []
    for _, _, obj in grid_objects(base):
        if obj.type not in TARGET_TYPES:
            continue
        name = obj.type if obj.type == "goal" else f"{obj.color} {obj.type}"
        if obj.type == "door":
            name = ("locked " if obj.is_locked else ("open " if obj.is_open else "closed ")) + name
        objects.append(name)
    carrying = base.carrying
    return {
        "env": getattr(getattr(base, "spec", None), "id", None) or type(base).__name__,
        "mission": str(base.mission),
        "objects": sorted(objects),
        "carrying": None if carrying is None else f"{carrying.color} {carrying.type}",
        "achieved": [s.text for s in achieved],
    }


def layout_digest(env: gym.Env) -> str:
    """Hash of the full grid encoding (positions, colours, door states)."""
    base = minigrid_base(env)
    return hashlib.sha1(base.grid.encode().tobytes()).hexdigest()[:16]
