"""Store-and-forward on real Mosquitto and PostgreSQL, with the shipped per-device limit on: trucks
uploading what they buffered in a dead zone, and the gateway's own backlog after a restart, are stored
whole; a device flooding on its own clock is held to the limit without touching the others."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from gateway.settings import Settings
from tests.support import publish, running_gateway, scalar, sql, wait_until

BASE = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)


def fix(truck: str, second: float) -> tuple[str, str]:
    """A buffered GPS fix, `second` seconds of the truck's clock after BASE."""
    return (f"trucks/{truck}/telemetry", json.dumps({
        "ts": (BASE + timedelta(seconds=second)).isoformat(), "lat": 41.39 + second * 1e-6, "lon": 2.16,
        "speed_kmh": 18.0}))


def limited(settings: Settings) -> Settings:
    """The limit as shipped (the test fixtures turn it off for tests that publish synthetic bursts)."""
    shipped = Settings.model_fields
    return settings.model_copy(update={"device_rate_limit_per_s": shipped["device_rate_limit_per_s"].default,
                                       "device_rate_window_s": shipped["device_rate_window_s"].default})


def counts(url: str) -> tuple[int, int]:
    return (int(scalar(url, "SELECT count(*) FROM telemetry")),
            int(scalar(url, "SELECT count(*) FROM rejected_messages")))


def test_ten_trucks_uploading_five_thousand_buffered_fixes_each_are_all_stored(settings: Settings) -> None:
    settings = limited(settings)
    assert settings.device_rate_limit_per_s > 0
    url = settings.database_url
    burst = [fix(f"T{truck}", second) for second in range(5000) for truck in range(10)]
    with running_gateway(settings):
        publish(settings.mqtt_url, burst)
        wait_until(lambda: sum(counts(url)) >= 50_000, timeout_s=120)
    assert counts(url) == (50_000, 0)
    assert sql(url, "SELECT count(DISTINCT device_id), min(n), max(n) FROM "
                    "(SELECT device_id, count(*) AS n FROM telemetry GROUP BY 1) per_truck") == [(10, 5000, 5000)]


def test_the_gateways_own_backlog_after_a_restart_is_stored_and_evaluated(settings: Settings) -> None:
    settings = limited(settings)
    url = settings.database_url
    with running_gateway(settings):
        publish(settings.mqtt_url, [fix("T1", 0)])
        wait_until(lambda: counts(url)[0] == 1)
    # The gateway is away; the broker keeps its persistent session's messages: 2,000 fixes, one a second.
    publish(settings.mqtt_url, [fix("T1", second) for second in range(1, 2001)])
    with running_gateway(settings) as gateway:
        wait_until(lambda: sum(counts(url)) >= 2001, timeout_s=60)
        engine = gateway.engine
        assert engine is not None
        # every one reached the rules: each truck rule's last evaluated device time is the backlog's last fix
        evaluated = {rule: t for (rule, device), t in engine.evaluated_at.items() if device == "T1"}
        assert evaluated and set(evaluated.values()) == {(BASE + timedelta(seconds=2000)).timestamp()}
    assert counts(url) == (2001, 0)


def test_a_device_flooding_on_its_own_clock_is_limited_and_the_others_are_not(settings: Settings) -> None:
    settings = limited(settings)
    url = settings.database_url
    flood = [fix("FLOOD", 4000 + i / 1000) for i in range(5000)]  # 5,000 readings stamped within 5 s
    backlogs = [fix(f"T{truck}", second) for second in range(500) for truck in range(9)]
    interleaved = [m for pair in zip(flood, backlogs + [None] * len(flood), strict=False) for m in pair if m]
    with running_gateway(settings):
        publish(settings.mqtt_url, interleaved)
        wait_until(lambda: sum(counts(url)) >= 5000 + 4500, timeout_s=120)
    stored = dict(sql(url, "SELECT device_id, count(*) FROM telemetry GROUP BY 1"))
    assert {d: n for d, n in stored.items() if d != "FLOOD"} == {f"T{truck}": 500 for truck in range(9)}
    per_window = int(settings.device_rate_limit_per_s * settings.device_rate_window_s)
    assert per_window <= stored["FLOOD"] <= 2 * per_window  # 5 s of its clock span one or two windows
    assert sql(url, "SELECT reason, device_id, count(*) FROM rejected_messages GROUP BY 1, 2") == [
        ("rate_limited", "FLOOD", 5000 - stored["FLOOD"])]
