from __future__ import annotations

from pathlib import Path

import pytest

from gateway.rules.loader import RuleFileError, files_signature, load_rules

GOOD = """rules:
  - id: full
    kind: threshold
    condition: fill_pct >= 80.0
    incident: {service_code: container_full, title: Full}
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems(directory: Path, codes: set[str] | None = None) -> list[str]:
    with pytest.raises(RuleFileError) as caught:
        load_rules(directory, codes)
    return caught.value.problems


def test_a_good_file_and_a_plain_list(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", "- {id: other, kind: absence, incident: {service_code: x, title: t}}\n")
    assert [r.id for r in load_rules(tmp_path).rules] == ["full", "other"]


@pytest.mark.parametrize(("text", "line", "message"), [
    (GOOD.replace("condition: fill_pct >= 80.0", "condition: fill_pct >="), 4, "CEL syntax error"),
    (GOOD.replace("condition: fill_pct >= 80.0", "condition: fil_pct >= 80.0"), 4, "fil_pct"),
    (GOOD + "    colour: red\n", 6, "colour: Extra inputs are not permitted"),
    (GOOD.replace("kind: threshold", "kind: magic"), 2, "does not match any of the expected tags"),
    (GOOD.replace("    condition: fill_pct >= 80.0\n", "    condition: fill_pct >= 80.0\n    for: ages\n"), 5,
     "for: Value error, not a duration"),
    (GOOD.replace("title: Full", "title: Full, severity: apocalyptic"), 5, "incident.severity"),
    ("rules: [\n", 1, "a.yaml"),
])
def test_problems_carry_file_line_and_reason(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, "a.yaml", text)
    (problem,) = problems(tmp_path)
    assert problem.startswith(f"{path}:") and message in problem
    if line > 1:
        assert problem.startswith(f"{path}:{line}:"), problem


def test_unknown_service_code_and_duplicate_ids(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", GOOD)
    found = problems(tmp_path, {"container_full"})
    assert len(found) == 1 and "id already used at" in found[0]
    assert "not in the service catalogue" in problems(tmp_path, {"other"})[0]


def test_zone_layers_must_exist_and_be_valid(tmp_path: Path) -> None:
    write(tmp_path, "g.yaml", "- {id: g, kind: geofence, mode: enter, zones: {layers: [schools]}, "
                              "incident: {service_code: x, title: t}}\n")
    assert "zone layer(s) schools not found" in problems(tmp_path)[0]
    point = '{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [2, 41]}}'
    write(tmp_path, "zones/schools.geojson", '{"type": "FeatureCollection", "features": [' + point + "]}")
    assert "Point is not an area" in problems(tmp_path)[0]


def test_the_signature_changes_when_a_file_changes(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", GOOD)
    before = files_signature(tmp_path)
    path.write_text(GOOD + "\n\n")
    assert files_signature(tmp_path) != before


def test_the_kinds_come_from_the_one_registry() -> None:
    from typing import get_args

    from gateway.rules import KIND_CONFIGS, KINDS, RuleConfig

    union = get_args(get_args(RuleConfig)[0])
    assert set(union) == set(KIND_CONFIGS)  # the union and the list are the same registry
    assert {"threshold", "geofence", "absence", "collection"} <= KINDS and len(KINDS) == len(KIND_CONFIGS)
