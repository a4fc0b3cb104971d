"""Where a message's time goes inside the gateway, stage by stage, without MQTT: decode and normalize,
the rules, and the commit (the Python side of it, and the wall time that includes PostgreSQL's part).

The gateway's MQTT client runs the same paho-mqtt code as the bare subscriber of the `limit` scenario, in
the same interpreter as these stages: what they cost per message is what separates the end-to-end rate
from the limit.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.traffic import devices, messages
from gateway.catalogue import load_service_codes
from gateway.devices import DeviceDirectory
from gateway.events import AckToken, Batch, RawMessage
from gateway.ingest import IngestLimits, Ingestor
from gateway.ingest.frame_counters import FrameCounters
from gateway.ingest.rate_limit import DeviceRateLimiter
from gateway.profiles.loader import load_profiles
from gateway.rules.engine import RuleEngine
from gateway.rules.loader import load_rules
from gateway.settings import Settings
from gateway.store.batch import commit_batch
from gateway.store.pool import open_pool

REPO = Path(__file__).resolve().parent.parent


async def _measure(database_url: str, rules_dir: Path, count: int, batch_size: int) -> dict[str, Any]:
    profiles = load_profiles(REPO / "device_profiles")
    rules = load_rules(rules_dir, load_service_codes(REPO / "services.yaml"))
    directory = DeviceDirectory(devices())
    settings = Settings(_env_file=None)  # the shipped defaults, the device limit on
    ingestor = Ingestor(profiles, directory, lambda: datetime.now(UTC),
                        IngestLimits(65536, timedelta(days=1), timedelta(days=35)), FrameCounters(),
                        DeviceRateLimiter(settings.device_rate_limit_per_s, settings.device_rate_window_s))
    engine = RuleEngine(rules, directory, {p.name: p.config.defaults.expected_interval_s for p in profiles.profiles})
    received = datetime.now(UTC)
    raw = [RawMessage(topic, payload, received, AckToken(1, i % 65535 + 1, 1))
           for i, (topic, payload) in enumerate(messages(count, seed=4))]
    decode = rules_s = commit_wall = commit_cpu = 0.0
    findings = rejected = 0
    pool = await open_pool(database_url)
    try:
        for start in range(0, count, batch_size):
            batch = raw[start:start + batch_size]
            t0 = time.perf_counter()
            result = ingestor.process(batch)
            t1 = time.perf_counter()
            found = engine.evaluate(result.readings, datetime.now(UTC))
            t2 = time.perf_counter()
            cpu = time.process_time()
            await commit_batch(pool, Batch(result.readings, result.rejections, result.devices_seen,
                                           found.findings, found.states))
            commit_cpu += time.process_time() - cpu
            commit_wall += time.perf_counter() - t2
            findings += len(found.findings)
            rejected += len(result.rejections)
            decode += t1 - t0
            rules_s += t2 - t1
    finally:
        await pool.close()

    def per_message(seconds: float) -> float:
        return round(seconds / count * 1e6, 1)

    figures = {"decode_us": per_message(decode), "rules_us": per_message(rules_s),
               "commit_cpu_us": per_message(commit_cpu), "commit_wall_us": per_message(commit_wall)}
    figures["gateway_python_us"] = round(figures["decode_us"] + figures["rules_us"] + figures["commit_cpu_us"], 1)
    return {"messages": count, **figures, "findings": findings, "rejected": rejected}


def stage_costs(database_url: str, rules_dir: Path, count: int = 20_000, batch_size: int = 1000) -> dict[str, Any]:
    """Microseconds per message in each stage, over the benchmark's traffic and the rules in `rules_dir`,
    into `database_url`."""
    return asyncio.run(_measure(database_url, rules_dir, count, batch_size))
