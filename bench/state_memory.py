"""`python -m bench.state_memory N`: RSS of the shipped rules' engine holding state for N devices."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    from gateway.catalogue import load_service_codes
    from gateway.devices import Device, DeviceDirectory
    from gateway.events import Reading
    from gateway.rules.engine import RuleEngine
    from gateway.rules.loader import load_rules

    count = int(sys.argv[1])
    repo = Path(__file__).resolve().parent.parent
    rules = load_rules(repo / "rules", load_service_codes(repo / "services.yaml"))
    half = count // 2
    devices = [Device(f"C{i}", "container", "container", attributes=MappingProxyType({"bin_depth_mm": 1200}))
               for i in range(half)] + [Device(f"T{i}", "truck", "truck") for i in range(count - half)]
    engine = RuleEngine(rules, DeviceDirectory(devices), {"container": 3600.0, "truck": 60.0})
    before = rss_mb()
    now = datetime.now(UTC)
    batch = []
    for i, device in enumerate(devices):
        t = now + timedelta(milliseconds=i)
        if device.kind == "container":
            batch.append(Reading(device.device_id, t, t, b"k", "container", fill_pct=85.0, battery_pct=90.0,
                                 tilted=False, temperature_c=20.0))
        else:
            batch.append(Reading(device.device_id, t, t, b"k", "truck", lat=41.39, lon=2.165, speed_kmh=0.0,
                                 extra=MappingProxyType({"ignition": True})))
        if len(batch) == 5000:
            engine.evaluate(batch, now)
            batch = []
    engine.evaluate(batch, now)
    after = rss_mb()
    states = sum(1 for state in engine.states.values() if state)
    print(json.dumps({"devices": count, "rule_states": states, "rss_mb": round(after, 1),
                      "state_mb": round(after - before, 1)}))


if __name__ == "__main__":
    main()
