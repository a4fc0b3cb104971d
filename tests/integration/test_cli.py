"""The `wastegate` command against a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from tests.support import REPO, scalar, sql

runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["migrate"], ["serve"], ["demo"], ["devices"], ["devices", "import"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def env(url: str) -> dict[str, str]:
    return {"WASTEGATE_DATABASE_URL": url, "WASTEGATE_PROFILES_DIR": str(REPO / "device_profiles")}


def test_migrate_twice(empty_database_url: str) -> None:
    first = runner.invoke(app, ["migrate"], env=env(empty_database_url))
    assert first.exit_code == 0, first.output
    assert "applied: 0001_initial" in first.output and "telemetry storage: partitioned" in first.output
    second = runner.invoke(app, ["migrate"], env=env(empty_database_url))
    assert second.exit_code == 0 and "database is up to date" in second.output
    assert scalar(empty_database_url, "SELECT count(*) FROM pg_inherits") > 7  # day partitions ahead


def test_devices_import_upserts(database_url: str) -> None:
    path = REPO / "tests/integration/data/devices.csv"
    for _ in range(2):
        result = runner.invoke(app, ["devices", "import", str(path)], env=env(database_url))
        assert result.exit_code == 0, result.output
        assert "3 devices imported" in result.output
    rows = sql(database_url, "SELECT device_id, kind, attributes->>'bin_depth_mm', lat FROM devices ORDER BY 1")
    assert rows == [("C-0001", "container", "1200", 41.4036), ("C-0002", "container", "1000", 41.399),
                    ("T9", "truck", None, None)]


def test_a_bad_row_applies_nothing(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "devices.csv"
    path.write_text("device_id,profile,lat,lon\nC-1,container,41.4,2.1\nC-2,container,41.4,200\n")
    result = runner.invoke(app, ["devices", "import", str(path)], env=env(database_url))
    assert result.exit_code == 1
    assert f"{path}:3: lon" in result.output and "nothing imported" in result.output
    assert scalar(database_url, "SELECT count(*) FROM devices") == 0


def test_rules_check(tmp_path: Path) -> None:
    import shutil

    good = runner.invoke(app, ["rules", "check", str(REPO / "rules")],
                         env={"WASTEGATE_SERVICES_FILE": str(REPO / "services.yaml")})
    assert good.exit_code == 0, good.output
    assert "rules OK" in good.output and "rule test cases, 0 failed" in good.output
    broken = tmp_path / "rules"
    shutil.copytree(REPO / "rules", broken)
    text = (broken / "containers.yaml").read_text()
    (broken / "containers.yaml").write_text(text.replace("service_code: container_full", "service_code: nope"))
    bad = runner.invoke(app, ["rules", "check", str(broken)],
                        env={"WASTEGATE_SERVICES_FILE": str(REPO / "services.yaml")})
    assert bad.exit_code == 1
    assert f"{broken / 'containers.yaml'}:16: rule container-full: service_code 'nope'" in bad.output


def test_simulate_run_and_score(settings: object, tmp_path: Path) -> None:
    from gateway.settings import Settings
    from tests.support import running_gateway, wait_until

    assert isinstance(settings, Settings)
    truth = tmp_path / "truth.jsonl"
    from datetime import UTC, datetime

    from gateway.store.devices import upsert_devices
    from simulators.city import City

    env = {"WASTEGATE_DATABASE_URL": settings.database_url, "WASTEGATE_MQTT_URL": settings.mqtt_url}
    upsert_devices(settings.database_url, City(datetime.now(UTC)).registered_devices())  # imported beforehand
    with running_gateway(settings):
        ran = runner.invoke(app, ["simulate", "run", "--duration", "2", "--no-register", "--truth", str(truth)],
                            env=env)
        assert ran.exit_code == 0, ran.output
        assert "messages published" in ran.output and len(truth.read_text().splitlines()) == 10
        # at real time, two seconds show only what happens at once: the battery at 11%
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM incidents") >= 1)
    scored = runner.invoke(app, ["simulate", "score", "--truth", str(truth)], env=env)
    assert scored.exit_code == 0, scored.output
    assert "precision 1.00" in scored.output and "missed: container_full C-0002" in scored.output
