"""The signal-quality benchmark on two simulated days (the month is `python -m bench.signal`): the
simulator is deterministic, its truth covers the rules, and the shipped rules, built against noise, are at
least as precise as their naive stateless versions and find what the truth holds. Figures are written to a
JSON file; wall-clock times are not asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import signal


def test_the_shipped_rules_against_the_simulated_truth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signal, "RESULTS", tmp_path)
    figures = signal.run(2, "smoke")
    assert json.loads((tmp_path / "signal-smoke.json").read_text())["rules"] == figures["rules"]
    assert figures["duplicates_dropped"] > 0 and figures["readings"] > 100_000
    with_truth = {rule: by_set for rule, by_set in figures["rules"].items() if by_set["shipped"]["truth"]}
    assert len(with_truth) >= 7, figures["truth_by_rule"]
    for rule, by_set in with_truth.items():
        shipped, naive = by_set["shipped"], by_set["naive"]
        assert shipped["precision"] >= naive["precision"], (rule, shipped, naive)
        assert shipped["recall"] >= 0.9, (rule, shipped["missed"])
    noisy = ("container-full", "container-tilted", "sensor-silent", "truck-idling")
    assert all(figures["rules"][r]["naive"]["precision"] < 0.7 for r in noisy)  # what the noise does to naive rules
