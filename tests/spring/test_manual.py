"""The offline default context: a manual generated from Crafter's own data.yaml."""

from __future__ import annotations

import copy

from llmguide.teachers.spring import crafter_data, crafter_manual, estimate_tokens

from llmguide.metrics import CRAFTER_ACHIEVEMENTS


def _line(manual: str, achievement: str) -> str:
    return next(ln for ln in manual.splitlines() if ln.startswith(f"- {achievement}:"))


def test_manual_lists_every_action_and_achievement() -> None:
    data = crafter_data()
    manual = crafter_manual()
    assert len(data["actions"]) == 17
    for action in data["actions"]:
        assert action in manual
    assert tuple(data["achievements"]) == CRAFTER_ACHIEVEMENTS
    for achievement in CRAFTER_ACHIEVEMENTS:
        assert f"- {achievement}:" in manual
    assert "grass, path, sand" in manual  # walkable materials
    assert estimate_tokens(manual) < 1000  # concise: it sits in every prompt


def test_manual_states_requirements_and_recipes_from_data() -> None:
    manual = crafter_manual()
    assert "tree" in _line(manual, "collect_wood") and "wood" in _line(manual, "collect_wood")
    assert "wood_pickaxe" in _line(manual, "collect_stone")
    assert "stone_pickaxe" in _line(manual, "collect_iron")
    assert "iron_pickaxe" in _line(manual, "collect_diamond")
    assert "water" in _line(manual, "collect_drink")
    assert "10%" in _line(manual, "collect_sapling")
    iron = _line(manual, "make_iron_pickaxe")
    assert "1 wood, 1 coal, 1 iron" in iron and "table and furnace" in iron
    assert "stone" in _line(manual, "place_furnace")
    assert "cow" in _line(manual, "eat_cow") and "zombie" in _line(manual, "defeat_zombie")


def test_manual_follows_the_data_not_a_hardcoded_text() -> None:
    data = copy.deepcopy(crafter_data())
    data["make"]["wood_pickaxe"]["uses"] = {"wood": 7}
    data["walkable"] = ["grass", "lava"]
    manual = crafter_manual(data)
    assert "uses 7 wood" in _line(manual, "make_wood_pickaxe")
    assert "grass, lava" in manual
    assert crafter_manual() != manual
