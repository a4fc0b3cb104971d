"""Every shipped profile's golden test cases (see gateway/ingest/testcases.py for the format)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.ingest.testcases import discover, run_case
from gateway.profiles.loader import load_profiles
from tests.support import REPO

PROFILES_DIR = REPO / "device_profiles"
CASES = discover(PROFILES_DIR)
PROFILES = load_profiles(PROFILES_DIR)


def test_every_profile_has_cases() -> None:
    with_cases = {case.parent.parent.name for case in CASES}
    assert with_cases == set(PROFILES.by_name)


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.parent.parent.name}/{case.name}")
def test_golden_case(case: Path) -> None:
    outcome = run_case(case, PROFILES)
    assert outcome.ok, "\n".join(outcome.problems)


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    case = tmp_path / "truck" / "testcases" / "wrong"
    case.mkdir(parents=True)
    (case / "input.json").write_text('{"ts": "2026-11-23T08:15:02Z", "lat": 41.4, "lon": 2.1}')
    (case / "expected.json").write_text('{"topic": "trucks/T1/telemetry", "now": "2026-11-23T08:16:00Z", '
                                        '"readings": [{"device_id": "T1", "lat": 41.5}]}')
    outcome = run_case(case, PROFILES)
    assert not outcome.ok and "expected" in outcome.problems[0]
