from __future__ import annotations

from pathlib import Path

import pytest

from gateway.device_import import DeviceFileError, read_devices

KINDS = {"truck": "truck", "container": "container"}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_columns_and_attributes(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "device_id,profile,name,lat,lon,bin_depth_mm,waste_kind,smart\n"
                                    "C1,container,Mallorca 401,41.40,2.17,1200,paper,true\nT1,truck,,,,,,\n")
    c1, t1 = read_devices(path, KINDS)
    assert (c1.device_id, c1.kind, c1.name, c1.lat, c1.lon) == ("C1", "container", "Mallorca 401", 41.40, 2.17)
    assert dict(c1.attributes) == {"bin_depth_mm": 1200, "waste_kind": "paper", "smart": True}
    assert (t1.kind, t1.lat, dict(t1.attributes)) == ("truck", None, {})


def test_yaml_list_or_devices_key(tmp_path: Path) -> None:
    text = "devices:\n  - device_id: C1\n    profile: container\n    attributes: {bin_depth_mm: 900}\n"
    (device,) = read_devices(write(tmp_path, "d.yaml", text), KINDS)
    assert device.attributes["bin_depth_mm"] == 900
    assert len(read_devices(write(tmp_path, "e.yml", "- {device_id: T1, profile: truck}\n"), KINDS)) == 1


def test_every_bad_csv_row_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "device_id,profile,lat,lon\nC1,container,41.4,2.1\nC2,bus,41.4,2.1\n"
                                    "C3,container,95,2.1\nC1,container,,\n,container,,\n")
    with pytest.raises(DeviceFileError) as caught:
        read_devices(path, KINDS)
    problems = caught.value.problems
    assert [p.split(":")[1] for p in problems] == ["3", "4", "5", "6"]
    assert "profile 'bus'" in problems[0] and "lat" in problems[1] and "already on line 2" in problems[2]


def test_bad_yaml_rows_carry_their_line(tmp_path: Path) -> None:
    text = "- device_id: C1\n  profile: container\n- device_id: C2\n  profile: container\n  colour: red\n"
    with pytest.raises(DeviceFileError) as caught:
        read_devices(write(tmp_path, "d.yaml", text), KINDS)
    assert caught.value.problems == [f"{tmp_path}/d.yaml:3: colour: Extra inputs are not permitted"]
