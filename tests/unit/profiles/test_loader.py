from __future__ import annotations

from pathlib import Path

import pytest

from gateway.profiles.loader import ProfileError, load_profile, load_profiles
from tests.support import REPO


def test_shipped_profiles_load_and_route() -> None:
    profiles = load_profiles(REPO / "device_profiles")
    assert {"truck", "container"} <= set(profiles.by_name)
    assert "trucks/+/telemetry" in profiles.subscriptions
    route = profiles.route("containers/C-7/telemetry")
    assert route is not None and route.choose(None).name == "container"  # type: ignore[union-attr]
    assert route.values == {"device_id": "C-7"} and route.device_id == "C-7"
    assert profiles.route("containers/C-7") is None


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name / "profile.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


GOOD = "kind: truck\ntopic: t/{device_id}\ndecoder: {type: json_mapping}\n"


@pytest.mark.parametrize(("text", "message"), [
    (GOOD + "colour: red\n", "colour: Extra inputs are not permitted"),
    ("kind: truck\ntopic: t/x\ndecoder: {type: json_mapping}\n", "no {device_id} placeholder"),
    ("kind: truck\ntopic: t/+\ndecoder: {type: json_mapping}\n", "must be a literal or a whole placeholder"),
    ("kind: truck\ntopic: t/{device_id}\ndecoder: {type: protobuf}\n", "decoder"),
    (GOOD + "unknown_devices: maybe\n", "unknown_devices"),
    ("kind: [truck\n", "profile.yaml"),
    ("- a\n- b\n", "expected a mapping"),
])
def test_bad_profiles_are_refused_with_the_file_and_reason(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "p1", text)
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_profiles_sharing_a_topic_are_chosen_by_the_registered_device(tmp_path: Path) -> None:
    write(tmp_path, "a", GOOD)
    write(tmp_path, "b", GOOD)
    profiles = load_profiles(tmp_path)
    assert profiles.subscriptions == ["t/+"]
    route = profiles.route("t/1")
    assert route is not None and [p.name for p in route.candidates] == ["a", "b"]
    assert route.choose("b").name == "b"  # type: ignore[union-attr]
    assert route.choose(None) is None and route.choose("c") is None


def test_profiles_sharing_a_topic_must_build_the_same_device_id(tmp_path: Path) -> None:
    write(tmp_path, "a", "kind: x\ntopic: o/{user}/{dev}\ndevice_id: '{user}/{dev}'\ndecoder: {type: json_mapping}\n")
    write(tmp_path, "b", "kind: x\ntopic: o/{user}/{dev}\ndevice_id: '{dev}'\ndecoder: {type: json_mapping}\n")
    with pytest.raises(ProfileError, match="build the device id differently"):
        load_profiles(tmp_path)


def test_the_more_literal_pattern_wins(tmp_path: Path) -> None:
    write(tmp_path, "generic", "kind: x\ntopic: t/{device_id}/#\ndecoder: {type: json_mapping}\n")
    write(tmp_path, "specific", "kind: x\ntopic: t/{device_id}/status\ndecoder: {type: json_mapping}\n")
    profiles = load_profiles(tmp_path)
    assert profiles.route("t/1/status").choose(None).name == "specific"  # type: ignore[union-attr]
    assert profiles.route("t/1/other").choose(None).name == "generic"  # type: ignore[union-attr]


def test_routes_are_remembered_per_topic_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.profiles import loader

    profiles = load_profiles(REPO / "device_profiles")
    first = profiles.route("trucks/T1/telemetry")
    assert first is not None and first.device_id == "T1"
    assert profiles.route("trucks/T1/telemetry") is first
    assert profiles.route("nobody/claims/this") is None
    monkeypatch.setattr(loader, "ROUTE_CACHE_SIZE", 3)
    routes = [profiles.route(f"trucks/T{i}/telemetry") for i in range(2, 10)]
    assert [r.device_id for r in routes if r] == [f"T{i}" for i in range(2, 10)]
    assert len(profiles._routes) <= 3
    with pytest.raises(TypeError):
        first.values["device_id"] = "T2"  # type: ignore[index]  # shared between messages: read-only
