"""The shipped rules' test cases (rules/tests/*.yaml, format in gateway/rules/testcases.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.catalogue import load_service_codes
from gateway.rules.loader import load_rules
from gateway.rules.testcases import discover, run_case
from tests.support import REPO

RULES = load_rules(REPO / "rules", load_service_codes(REPO / "services.yaml"))
CASES = discover(REPO / "rules")


def test_every_shipped_rule_has_a_case() -> None:
    import yaml

    covered = {yaml.safe_load(path.read_text())["rule"] for path in CASES}
    assert covered == set(RULES.by_id)


@pytest.mark.parametrize("case", CASES, ids=lambda path: path.stem)
def test_rule_case(case: Path) -> None:
    outcome = run_case(case, RULES)
    assert outcome.ok, "\n".join(outcome.problems)


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    text = (REPO / "rules/tests/container-tilted.yaml").read_text().replace("action: open", "action: resolve")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(text)
    outcome = run_case(wrong, RULES)
    assert not outcome.ok and "step 4" in outcome.problems[0]
