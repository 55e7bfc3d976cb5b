"""NetHack view: message, bottom line, inventory and surroundings follow the observation."""

from __future__ import annotations

import numpy as np
import pytest
from llmguide.envs import make
from llmguide.envs.nethack import NetHackText
from nle import nethack


@pytest.fixture(scope="module")
def env():
    e = make("NetHackScore-v0")
    yield e
    e.close()


def test_action_names_from_enum(env):
    _, info = env.reset(seed=0)
    names = info["action_names"]
    assert len(names) == env.action_space.n == len(set(names))
    assert names[:2] == ["MORE", "N"] and "FAR_N" in names and "SEARCH" in names
    assert set(NetHackText.info_keys) <= set(info)


def test_text_follows_observation(env):
    obs, info = env.reset(seed=0)
    bl = obs["blstats"]
    hp, hpmax = int(bl[nethack.NLE_BL_HP]), int(bl[nethack.NLE_BL_HPMAX])
    assert f"HP {hp}/{hpmax}" in info["text"] and info["stats"]["hp"] == hp
    assert f"depth {int(bl[nethack.NLE_BL_DEPTH])}" in info["text"]
    message = bytes(obs["message"]).split(b"\0")[0].decode()
    assert info["message"] == message.strip()
    if message:
        assert message.strip() in info["text"]
    first_item = bytes(obs["inv_strs"][0]).split(b"\0")[0].decode()
    assert first_item and first_item in info["text"]
    # The pet starts next to the agent.
    assert "Next to you:" in info["text"] and "tame" in info["text"]


def test_you_see_lists_nearest_notable_cells(env):
    obs, info = env.reset(seed=1)
    chars = obs["chars"]
    x, y = info["stats"]["x"], info["stats"]["y"]
    notable = ~np.isin(chars, [ord(c) for c in " .#-|"])
    notable[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = False
    seen = info["text"].split("You see: ")[1].split(". Inventory")[0]
    count = 0 if seen.startswith("nothing else") else len(seen.split("; "))
    assert count == min(int(notable.sum()), 8)


def test_events_from_messages_and_stats(env):
    env.reset(seed=0)
    env.action_space.seed(0)
    messages = 0
    for _ in range(150):
        _, _, term, trunc, info = env.step(env.action_space.sample())
        if info["message"]:
            messages += 1
            assert info["events"] and info["events"][0] in info["message"]
        if term or trunc:
            env.reset()
    assert messages > 0


def test_challenge_reset_with_seed_is_allowed():
    e = make("NetHackChallenge-v0")
    _, info = e.reset(seed=0)
    assert info["text"] and len(info["action_names"]) == e.action_space.n
    e.close()


def test_text_read_late_is_the_text_of_its_own_step():
    """NLE reuses its observation arrays: deferred text must come from the step's own copy."""
    late_env, now_env = make("NetHackScore-v0"), make("NetHackScore-v0")
    try:
        _, late_reset = late_env.reset(seed=3)
        _, now_reset = now_env.reset(seed=3)
        now_reset_text = now_reset["text"]
        rng = np.random.default_rng(0)
        late, now = [], []
        for a in rng.integers(0, late_env.action_space.n, 60).tolist():
            late.append(late_env.step(a)[4])  # read only after later steps overwrote NLE's arrays
            _, _, term, trunc, info = now_env.step(a)
            now.append((info["text"], info["events"], info["stats"], info["message"]))
            if term or trunc:
                break
        assert late_reset["text"] == now_reset_text  # seeded resets give identical text, read late too
        assert late_env.last_text == now[-1][0]
        assert len(late) == len(now) > 10
        texts = {n[0] for n in now}
        assert len(texts) > 1  # the state did change along the way
        for info, (text, events, stats, message) in zip(late, now):
            assert (info["text"], info["events"], info["stats"], info["message"]) == (text, events, stats, message)
    finally:
        late_env.close()
        now_env.close()


def test_seeded_resets_give_identical_text():
    a, b = make("NetHackScore-v0"), make("NetHackScore-v0")
    try:
        for seed in (0, 5):
            assert a.reset(seed=seed)[1]["text"] == b.reset(seed=seed)[1]["text"]
        first = a.reset(seed=7)[1]
        a.step(1)
        assert a.reset(seed=7)[1]["text"] == first["text"]
    finally:
        a.close()
        b.close()


def test_map_cells_are_named_from_glyphs_by_appearance(env):
    _, info = env.reset(seed=0)
    text = info["text"]
    # The pet is named from its glyph, and nothing falls back to raw characters.
    assert "tame little dog" in text or "tame kitten" in text
    seen = text.split("Next to you: ")[1].split(" Inventory:")[0]
    assert "monster" not in seen
    # Objects show their appearance, not their (shuffled) true name.
    from llmguide.envs.nethack import _glyph_name

    healing = next(i for i in range(nethack.NUM_OBJECTS) if nethack.OBJ_NAME(nethack.objclass(i)) == "healing")
    name = _glyph_name(nethack, nethack.GLYPH_OBJ_OFF + healing)
    assert name.endswith(" potion") and "healing" not in name
