"""A conjunction whose simple comparison is false is decided without CEL: the answer must be CEL's own,
whatever the values (floats, NaN, integers, strings, missing), for conjunctions with `||` and `?:` inside
parentheses, strings holding `&&`, and expressions that are not conjunctions at the top level."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.rules.expressions import Condition, _conjuncts
from gateway.rules.model import READING_VARIABLES

EXPRESSIONS = [
    "speed_kmh < 2.0 && has(extra.ignition) && extra.ignition == true",
    "fill_pct >= 80.0 && temperature_c > 40.0",
    "(fill_pct >= 80.0 || tilted == true) && battery_pct < 15.0",
    "tilted == true && extra.mode == \"a&&b\"",
    "fill_pct >= 80.0 && temperature_c > 40.0 || tilted == true",
    "fill_pct > 10.0 ? temperature_c > 40.0 : tilted == true",
    # found in review: a comment with a quote hides a `||`; a raw string's backslash; a literal compared
    "fill_pct < 2.0 && tilted == true // isn't full\n || battery_pct < 15.0",
    'extra.mode == r"\\" || extra.mode == "x\\"" && fill_pct < 2.0',
    "true == true && fill_pct < 2.0",
]
VALUES = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 200), st.booleans(),
                   st.text(max_size=3))


def reference(source: str) -> Condition:
    condition = Condition(source, READING_VARIABLES)
    condition._false_when = ()  # every evaluation through CEL
    return condition


@given(st.sampled_from(EXPRESSIONS), st.fixed_dictionaries({
    "speed_kmh": VALUES, "fill_pct": VALUES, "temperature_c": VALUES, "battery_pct": VALUES, "tilted": VALUES,
    "extra": st.dictionaries(st.sampled_from(["ignition", "mode"]), VALUES, max_size=2)}))
def test_the_shortcut_answers_as_cel_does(source: str, context: dict[str, Any]) -> None:
    assert Condition(source, READING_VARIABLES).evaluate(context) == reference(source).evaluate(context)


def test_only_top_level_conjunctions_are_split() -> None:
    assert _conjuncts(EXPRESSIONS[0]) == ["speed_kmh < 2.0 ", " has(extra.ignition) ", " extra.ignition == true"]
    assert _conjuncts(EXPRESSIONS[2]) == ["(fill_pct >= 80.0 || tilted == true) ", " battery_pct < 15.0"]
    assert _conjuncts(EXPRESSIONS[3]) == ["tilted == true ", ' extra.mode == "a&&b"']
    assert _conjuncts(EXPRESSIONS[4]) is None and _conjuncts(EXPRESSIONS[5]) is None
    assert _conjuncts("fill_pct >= 80.0") is None
    moving = Condition(EXPRESSIONS[0], READING_VARIABLES)
    assert len(moving._false_when) == 1 and moving.evaluate({"speed_kmh": 30.0, "extra": {}}) is False
