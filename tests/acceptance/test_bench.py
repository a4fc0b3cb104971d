"""The benchmark runs end to end (small counts here; figures are not asserted, only that every scenario
produced its own and that the JSON is written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.run import run


@pytest.mark.timeout(360)  # every scenario, RabbitMQ's included, in one run
def test_every_scenario_runs_and_writes_its_figures(tmp_path: Path) -> None:
    result = run(3000, "smoke", quick=True, results_dir=tmp_path)
    written = json.loads((tmp_path / "smoke.json").read_text())
    assert written["summary"] == result["summary"]
    figures = written["figures"]
    for scenario in ("limit", "end_to_end", "naive", "scale_out_2"):
        assert figures[scenario]["msg_per_s"] > 0, scenario
    assert figures["end_to_end"]["messages"] == 3000 and figures["scale_out_2"]["replicas"] == 2
    assert figures["latency"]["incidents"] == 200  # every fire became an incident
    assert [r["devices"] for r in figures["rss"]] == [1000, 10_000, 100_000]
    assert figures["forecast"]["overflows"] > 0 and figures["forecast"]["time_to_full_error_h"]["24h"]["instants"] > 0
    assert figures["routes"]["days"] == 3 and figures["routes"]["not_served"] == 0
    assert figures["evidence"]["answered"] == 20 and figures["evidence"]["answered_report"]["p50_ms"] > 0
    assert figures["standby_takeover"]["takeover_s"] > 0 and figures["standby_takeover"]["lease_s"] == 2.0
    amqp = figures["rabbitmq"]
    assert all(amqp[k]["msg_per_s"] > 0 for k in ("limit", "replicas_1", "replicas_2"))
    assert amqp["partition_takeover"]["takeover_s"] > 0 and "amqp_2_replicas_to_amqp_limit" in written["summary"]
    assert set(written["targets"]) >= {"e2e_to_limit_ratio >= 0.65", "rss <= 300 MB at 100000 devices"}
    stages = figures["stages"]
    assert stages["messages"] == 3000 and all(stages[k] > 0 for k in ("decode_us", "rules_us", "commit_cpu_us"))
    assert 0 < written["summary"]["limit_ratio_the_stages_allow"] < 1
    console = figures["console"]
    if "skipped" not in console:  # Chromium installed: the console scenario ran, in the same run
        assert console["truck_positions_drawn"] > 0 and console["first_render_ms"] > 0
        assert {"staleness p95 <= 2000 ms", "queue p95 <= 200 ms", "year chart p95 <= 300 ms"} == set(console["goals"])
