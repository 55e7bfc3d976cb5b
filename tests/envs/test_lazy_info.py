"""LazyInfo: deferred entries behave like plain dict entries, each computed at most once."""

from __future__ import annotations

import copy
import json
import pickle

import pytest
from llmguide.envs.lazy_info import LazyInfo


class Counter:
    """A thunk that counts its calls."""

    def __init__(self, value):
        self.value, self.calls = value, 0

    def __call__(self):
        self.calls += 1
        return self.value


def make():
    text, stats = Counter("the text"), Counter({"hp": 3})
    info = LazyInfo({"end_status": 0, "text": "stale"}, {"text": text, "stats": stats})
    return info, text, stats


PLAIN = {"end_status": 0, "text": "the text", "stats": {"hp": 3}}


def test_item_get_in_len_without_resolving_others():
    info, text, stats = make()
    assert len(info) == 3 and "text" in info and "stats" in info and "nope" not in info
    assert text.calls == stats.calls == 0
    assert info["text"] == "the text" and info.get("text") == "the text" and info["text"] == "the text"
    assert text.calls == 1 and stats.calls == 0
    assert info.get("nope", 7) == 7 and info.get("end_status") == 0
    with pytest.raises(KeyError):
        info["nope"]
    assert info["stats"] == {"hp": 3} and stats.calls == 1


def test_the_base_value_of_a_deferred_key_is_shadowed():
    info, _, _ = make()
    assert info["text"] == "the text" and "stale" not in repr(info)


@pytest.mark.parametrize(
    "view",
    [
        lambda d: dict(d),
        lambda d: {**d},
        lambda d: dict(d.items()),
        lambda d: dict(zip(d.keys(), d.values())),
        lambda d: {k: d[k] for k in d},
        lambda d: d.copy(),
        lambda d: {} | d,
        lambda d: d | {},
        lambda d: json.loads(json.dumps(d)),
        lambda d: pickle.loads(pickle.dumps(d)),
        lambda d: copy.copy(d),
        lambda d: dict(copy.deepcopy(d)),
        lambda d: dict(reversed(list(d.items()))),
    ],
)
def test_whole_dict_views_include_deferred_entries(view):
    info, text, stats = make()
    assert view(info) == PLAIN
    assert text.calls == stats.calls == 1


def test_copies_and_pickles_are_plain_dicts():
    info, text, _ = make()
    for out in (info.copy(), pickle.loads(pickle.dumps(info)), copy.copy(info)):
        assert type(out) is dict and out == PLAIN
    assert text.calls == 1


def test_deepcopy_stays_lazy_and_independent():
    """SB3's DummyVecEnv deep-copies infos every step: that must not compute them."""
    info, text, stats = make()
    info["stats"]  # read once: the copy reuses that value
    nested = {"infos": [info, info]}
    out = copy.deepcopy(nested)
    assert type(out["infos"][0]) is LazyInfo and out["infos"][0] is out["infos"][1]
    assert text.calls == 0 and stats.calls == 1
    assert out["infos"][0] == PLAIN and info == PLAIN
    assert text.calls == 2 and stats.calls == 1  # each copy runs a pending thunk for itself
    assert out["infos"][0]["stats"] is not info["stats"]
    out["infos"][0]["stats"]["hp"] = 0
    assert info["stats"] == {"hp": 3}


def test_equality_and_repr():
    info, _, _ = make()
    assert info == PLAIN and PLAIN == info and (info != PLAIN) is False
    other, _, _ = make()
    assert info == other
    assert info != {**PLAIN, "text": "other"}
    assert repr(info) == repr(PLAIN)


def test_key_order_is_stable_whatever_was_read_first():
    info, _, _ = make()
    assert info["stats"] and info["text"]
    assert list(info) == list(PLAIN)


def test_setting_or_deleting_a_deferred_key_skips_its_thunk():
    info, text, stats = make()
    info["text"] = "new"
    del info["stats"]
    assert info == {"end_status": 0, "text": "new"} and len(info) == 2
    assert text.calls == stats.calls == 0
    info, text, stats = make()
    info.update({"text": "u"}, stats=1)
    assert dict(info) == {"end_status": 0, "text": "u", "stats": 1} and text.calls == stats.calls == 0
    info, text, _ = make()
    info |= {"text": "o"}
    assert info["text"] == "o" and text.calls == 0


def test_pop_setdefault_popitem_clear():
    info, text, stats = make()
    assert info.pop("text") == "the text" and "text" not in info and len(info) == 2
    assert info.pop("text", None) is None
    with pytest.raises(KeyError):
        info.pop("text")
    assert info.setdefault("stats", 5) == {"hp": 3} and info.setdefault("new", 5) == 5
    assert info == {"end_status": 0, "stats": {"hp": 3}, "new": 5}
    assert text.calls == stats.calls == 1
    info, _, _ = make()
    assert info.popitem() == ("stats", {"hp": 3}) and len(info) == 2
    info.clear()
    assert info == {} and len(info) == 0 and not info


def test_thunk_runs_at_most_once_across_operations():
    info, text, stats = make()
    info["text"], info.get("text"), "text" in info, list(info), info.copy(), repr(info), info["text"]
    assert text.calls == stats.calls == 1


def test_only_deferred_entries_still_serialise():
    info = LazyInfo({}, {"a": lambda: 1, "b": lambda: 2})
    assert json.dumps(info) == '{"a": 1, "b": 2}' and len(info) == 2
    del info["a"]
    assert json.dumps(info) == '{"b": 2}'


def test_merged_puts_entries_then_thunks_over_base():
    calls = Counter("lazy")
    info = LazyInfo.merged({"a": 0, "b": 0, "c": 0}, {"b": 1}, {"c": calls})
    assert calls.calls == 0 and len(info) == 3
    assert info == {"a": 0, "b": 1, "c": "lazy"}
