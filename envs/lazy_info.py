"""Info dicts with entries computed on first read: exports `LazyInfo`.

Why: a language view's text is read now and then by an LLM teacher, while an
RL learner steps the same env millions of times and never looks at it.
Building the text eagerly would tax every step; a `LazyInfo` defers each
costly entry to a zero-argument callable (a thunk) that runs the first time
the entry is read, and at most once.

To every consumer it is a plain dict: item access, `get`, `in`, `len`,
iteration, `keys`/`items`/`values`, `dict(info)`, `{**info}`, `info | x`,
`copy()`, `pop`, `setdefault`, `update`, `==`, `repr`, `json.dumps`,
pickling and `copy.deepcopy` all see the deferred entries (iteration and
friends compute all of them first). Pickling, `copy.copy` and `copy()` give
a plain, resolved `dict`, so infos sent to SB3's `SubprocVecEnv` workers
arrive whole. `copy.deepcopy` gives a `LazyInfo` that shares the pending
thunks (each copy runs them for itself): SB3's `DummyVecEnv` deep-copies
every step's infos, and resolving there would build the text every step.
Setting or deleting a deferred key drops its thunk unrun.

Thunks must be pure: computed from what they captured when created, so the
value does not depend on when, or in which copy, it is read. They must not
hold on to buffers the env reuses between steps: capture copies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Self

__all__ = ["LazyInfo"]

_MISSING = object()
_new, _update, _keys, _pop, _len = dict.__new__, dict.update, dict.keys, dict.pop, dict.__len__


class LazyInfo(dict):
    """A dict whose deferred entries are computed by thunks on first read.

    Args:
        base: the entries known now (copied, as `dict(base)` would).
        thunks: key -> zero-argument callable giving that entry's value;
            a thunk's key wins over the same key in `base`.

    Example:
        >>> info = LazyInfo({"steps": 1}, {"text": lambda: "built on demand"})
        >>> info["text"], len(info), sorted(info)
        ('built on demand', 2, ['steps', 'text'])
    """

    __slots__ = ("_done", "_pending")

    def __init__(self, base: Mapping[Any, Any] | None = None, thunks: Mapping[Any, Callable[[], Any]] | None = None):
        _update(self, base or {})
        thunks = dict(thunks) if thunks else {}
        for key in thunks:  # invariant: a pending key is never in the storage
            _pop(self, key, None)
        self._pending = thunks
        # Values of pending keys read one by one; they join the storage, in
        # the thunks' order, when all are resolved (stable key order).
        self._done: dict[Any, Any] | None = None
        self._keep_nonempty()

    @classmethod
    def merged(
        cls, base: Mapping[Any, Any], entries: Mapping[Any, Any] | None, thunks: dict[Any, Callable[[], Any]]
    ) -> LazyInfo:
        """`base`'s entries, then `entries`, then the deferred `thunks`; later ones win.

        The fast constructor a wrapper calls at every step (`__init__`'s
        work, inlined): `thunks` is taken over, not copied.
        """
        out = _new(cls)
        _update(out, base)
        if entries:
            _update(out, entries)
        out._pending = thunks
        out._done = None
        if thunks:
            if not _keys(out).isdisjoint(thunks):
                for key in thunks:
                    _pop(out, key, None)
                if not _len(out):
                    out._resolve_all()
            elif not base and not entries:
                out._resolve_all()
        return out

    # -- resolution ------------------------------------------------------
    def _keep_nonempty(self) -> None:
        # json's C encoder prints "{}" for a dict subclass whose storage is
        # empty without asking it: keep at least one resolved entry there.
        if self._pending and not dict.__len__(self):
            self._resolve_all()

    def _value(self, key: Any) -> Any:
        """Value of pending `key` (computed once); it stays pending."""
        done = self._done
        if done is None:
            done = self._done = {}
        else:
            value = done.get(key, _MISSING)
            if value is not _MISSING:
                return value
        value = done[key] = self._pending[key]()
        return value

    def _resolve_all(self) -> None:
        pending = self._pending
        if not pending:
            return
        for key in list(pending):
            dict.__setitem__(self, key, self._value(key))
        pending.clear()
        self._done = None

    def _drop(self, key: Any) -> bool:
        """Forget pending `key` without running its thunk; True if it was pending."""
        if key in self._pending:
            del self._pending[key]
            if self._done:
                self._done.pop(key, None)
            return True
        return False

    # -- reads -----------------------------------------------------------
    def __missing__(self, key: Any) -> Any:
        if key in self._pending:
            return self._value(key)
        raise KeyError(key)

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self._pending:
            return self._value(key)
        return dict.get(self, key, default)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self._pending

    def __len__(self) -> int:
        return dict.__len__(self) + len(self._pending)

    def __iter__(self) -> Iterator[Any]:
        self._resolve_all()
        return dict.__iter__(self)

    def __reversed__(self) -> Iterator[Any]:
        self._resolve_all()
        return dict.__reversed__(self)

    def keys(self):  # type: ignore[override]
        self._resolve_all()
        return dict.keys(self)

    def items(self):  # type: ignore[override]
        self._resolve_all()
        return dict.items(self)

    def values(self):  # type: ignore[override]
        self._resolve_all()
        return dict.values(self)

    def copy(self) -> dict[Any, Any]:  # type: ignore[override]
        """A plain dict with every entry resolved."""
        self._resolve_all()
        return dict(dict.items(self))

    def __eq__(self, other: object) -> bool:
        self._resolve_all()
        if isinstance(other, LazyInfo):
            other._resolve_all()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        self._resolve_all()
        return dict.__repr__(self)

    def __or__(self, other: Any) -> Any:
        if not isinstance(other, Mapping):
            return NotImplemented
        out = self.copy()
        out.update(other)
        return out

    def __ror__(self, other: Any) -> Any:
        if not isinstance(other, Mapping):
            return NotImplemented
        out = dict(other)
        out.update(self.copy())
        return out

    def __ior__(self, other: Any) -> Self:
        self.update(other)
        return self

    def __reduce__(self) -> tuple[type, tuple[dict[Any, Any]]]:
        # Pickle and copy.copy as the plain, resolved dict (thunks stay home).
        return (dict, (self.copy(),))

    def __deepcopy__(self, memo: dict[int, Any]) -> LazyInfo:
        # Stays lazy: the copy shares the (pure) thunks and deep-copies the rest.
        from copy import deepcopy

        out = _new(LazyInfo)
        memo[id(self)] = out
        for key, value in dict.items(self):
            dict.__setitem__(out, deepcopy(key, memo), deepcopy(value, memo))
        out._pending = dict(self._pending)
        out._done = deepcopy(self._done, memo) if self._done else None
        return out

    # -- writes ----------------------------------------------------------
    def __setitem__(self, key: Any, value: Any) -> None:
        self._drop(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: Any) -> None:
        if not self._drop(key):
            dict.__delitem__(self, key)
        self._keep_nonempty()

    def pop(self, key: Any, *default: Any) -> Any:  # type: ignore[override]
        if key in self._pending:
            value = self._value(key)
            self._drop(key)
        else:
            value = dict.pop(self, key, *default)
        self._keep_nonempty()
        return value

    def popitem(self) -> tuple[Any, Any]:
        self._resolve_all()
        return dict.popitem(self)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key in self._pending:
            return self._value(key)
        return dict.setdefault(self, key, default)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:  # type: ignore[override]
        if not self._pending:
            dict.update(self, other, **kwargs)
            return
        new = dict(other, **kwargs)
        for key in new:
            self._drop(key)
        dict.update(self, new)

    def clear(self) -> None:
        self._pending.clear()
        self._done = None
        dict.clear(self)
