"""Runs every scenario against its own Mosquitto and PostgreSQL; prints a table, writes the JSON."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench import scenarios
from bench.stages import stage_costs
from bench.traffic import devices, messages, write
from gateway.embedded.mosquitto import Mosquitto
from gateway.embedded.postgres import Postgres
from gateway.settings import Settings
from gateway.store.devices import upsert_devices
from gateway.store.migrate import apply_storage_policies, migrate

RESULTS = Path(__file__).resolve().parent / "results"


def _database(postgres: Postgres, name: str) -> str:
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    url = postgres.url(name)
    migrate(url)
    apply_storage_policies(url, Settings(_env_file=None))
    upsert_devices(url, devices())
    return url


def _drop(postgres: Postgres, name: str) -> None:
    """A measured scenario's database goes, so that its autovacuum does not run into the next one."""
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run(count: int = 100_000, name: str = "latest", quick: bool = False,
        results_dir: Path = RESULTS) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="wastegate-bench-") as tmp:
        directory = Path(tmp)
        traffic = directory / "traffic.jsonl"
        write(traffic, messages(count))
        # Durable, as a city runs it: a commit before an acknowledgement means nothing without fsync.
        with Postgres(directory / "pg", durable=True, server_settings={"track_commit_timestamp": "on"}) as postgres:
            broker = Mosquitto(directory / "mosquitto").start()
            try:
                figures["limit"] = scenarios.limit(broker.url, traffic, count)
                print("limit", figures["limit"], flush=True)
                env = {"WASTEGATE_MQTT_URL": broker.url}
                url = _database(postgres, "bench_e2e")
                figures["end_to_end"] = scenarios.end_to_end(broker.url, url, traffic, count,
                                                             env | {"WASTEGATE_DATABASE_URL": url})
                print("end_to_end", figures["end_to_end"], flush=True)
                _drop(postgres, "bench_e2e")
                naive_count = count // (5 if quick else 2)
                naive_traffic = directory / "naive.jsonl"
                write(naive_traffic, messages(naive_count, seed=2))
                url = _database(postgres, "bench_naive")
                figures["naive"] = scenarios.naive(broker.url, url, naive_traffic, naive_count)
                print("naive", figures["naive"], flush=True)
                _drop(postgres, "bench_naive")
                rate = figures["end_to_end"]["msg_per_s"] / 2
                paced = directory / "paced.jsonl"
                latency_count = int(min(rate * (10 if quick else 20), count))
                write(paced, messages(latency_count, seed=3)[: latency_count - 200] + scenarios.fire_messages(200))
                url = _database(postgres, "bench_latency")
                figures["latency"] = scenarios.latency(broker.url, url, paced, rate,
                                                       env | {"WASTEGATE_DATABASE_URL": url})
                print("latency", figures["latency"], flush=True)
                _drop(postgres, "bench_latency")
                url = _database(postgres, "bench_scale")
                figures["scale_out_2"] = scenarios.end_to_end(broker.url, url, traffic, count,
                                                              env | {"WASTEGATE_DATABASE_URL": url}, replicas=2)
                print("scale_out_2", figures["scale_out_2"], flush=True)
                _drop(postgres, "bench_scale")
                figures["stages"] = stage_costs(_database(postgres, "bench_stages"), count=min(count, 20_000))
                print("stages", figures["stages"], flush=True)
            finally:
                broker.stop()
    figures["rule_cost"] = scenarios.rule_cost(readings=5000 if quick else 20000)
    print("rule_cost", figures["rule_cost"], flush=True)
    figures["rss"] = [scenarios.rss_for_devices(n) for n in (1000, 10_000, 100_000)]
    print("rss", figures["rss"], flush=True)
    e2e, limit, naive = (figures[k]["msg_per_s"] for k in ("end_to_end", "limit", "naive"))
    paho_us = 1e6 / limit
    gateway_us = figures["stages"]["gateway_python_us"]
    summary = {
        "e2e_to_limit_ratio": round(e2e / limit, 2),
        "e2e_to_naive_ratio": round(e2e / naive, 1),
        # The ceilings: what the stages' cost allows behind one paho client in one interpreter, and
        # what even a subscriber doing nothing gets over the naive pipeline.
        "paho_us_per_message": round(paho_us, 1),
        "gateway_python_us_per_message": gateway_us,
        "limit_ratio_the_stages_allow": round(paho_us / (paho_us + gateway_us), 2),
        "limit_to_naive_ratio": round(limit / naive, 1),
        "scale_out_ratio": round(figures["scale_out_2"]["msg_per_s"] / e2e, 2),
        "rule_time_10000_to_100_zones": figures["rule_cost"]["ratio_last_to_first"],
        "p99_commit_ms": figures["latency"]["p99_ms"],
        "incident_max_ms": figures["latency"].get("incident_max_ms"),
        "rss_mb_100000_devices": figures["rss"][-1]["rss_mb"],
    }
    targets = {
        "e2e_to_limit_ratio >= 0.6": summary["e2e_to_limit_ratio"] >= 0.6,
        "e2e_to_naive_ratio >= 10": summary["e2e_to_naive_ratio"] >= 10,
        "p99_commit_ms <= 250": summary["p99_commit_ms"] <= 250,
        "incident within 1 s": (summary["incident_max_ms"] or 1e9) <= 1000,
        "rule time 10000/100 zones <= 2": summary["rule_time_10000_to_100_zones"] <= 2,
        "rss <= 300 MB at 100000 devices": summary["rss_mb_100000_devices"] <= 300,
    }
    result = {"name": name, "when": datetime.now(UTC).isoformat(), "messages": count, "summary": summary,
              "targets": targets, "figures": figures, "seconds": round(time.time() - started),
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}}
    results_dir.mkdir(exist_ok=True)
    (results_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    return result


def print_table(result: dict[str, Any]) -> None:
    f = result["figures"]
    rows = [
        ("bare paho QoS 1 subscriber (limit)", f"{f['limit']['msg_per_s']:,} msg/s"),
        ("Wastegate end to end, rules on", f"{f['end_to_end']['msg_per_s']:,} msg/s"),
        ("naive pipeline", f"{f['naive']['msg_per_s']:,} msg/s"),
        ("two replicas (shared subscription)", f"{f['scale_out_2']['msg_per_s']:,} msg/s"),
        ("latency at half load p50 / p99 / max",
         f"{f['latency']['p50_ms']} / {f['latency']['p99_ms']} / {f['latency']['max_ms']} ms"),
        ("publish → incident row (max)", f"{f['latency'].get('incident_max_ms')} ms"),
        ("geofence per reading, 100 / 1,000 / 10,000 zones", " / ".join(
            str(f["rule_cost"][f"zones_{n}_us_per_reading"]) for n in (100, 1000, 10000)) + " µs"),
        ("RSS with 1k / 10k / 100k devices' state", " / ".join(f"{r['rss_mb']}" for r in f["rss"]) + " MB"),
        ("per message: decode / rules / commit (Python) µs", " / ".join(
            str(f["stages"][k]) for k in ("decode_us", "rules_us", "commit_cpu_us"))
         + f" (paho alone: {result['summary']['paho_us_per_message']})"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    for target, met in result["targets"].items():
        print(f"{'met' if met else 'MISSED':>6}  {target}")
    print(f"summary: {json.dumps(result['summary'])}")
