"""A fast QoS 1 publisher in its own process: `python -m bench.publisher URL FILE [RATE]`.

Prints a JSON line with the first and last publish times (epoch seconds); `BENCH_MQTT_PROTOCOL=3.1.1` for
RabbitMQ's MQTT plugin. With RATE (messages per second)
it paces itself and sets each message's device time to the time it is sent, for the latency scenario."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.traffic import read
from gateway.sources.mqtt import PUBLISH_WINDOW, MqttPublisher


def main() -> None:
    url, path = sys.argv[1], sys.argv[2]
    rate = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    items = read(Path(path))
    protocol = os.environ.get("BENCH_MQTT_PROTOCOL", "5")  # 3.1.1 for RabbitMQ 3.10's MQTT plugin
    with MqttPublisher(url, f"bench-publisher-{time.monotonic_ns()}", protocol, max_inflight=5000) as publisher:
        first = time.time()
        outstanding: deque[Any] = deque()
        for index, (topic, payload) in enumerate(items):
            if rate:
                due = first + index / rate
                pause = due - time.time()
                if pause > 0:
                    time.sleep(pause)
                # Paced runs measure latency: the device time is the time of sending.
                document = json.loads(payload)
                now = datetime.now(UTC).isoformat()
                document["time" if "deviceInfo" in document else "ts"] = now
                payload = json.dumps(document).encode()
            if len(outstanding) >= PUBLISH_WINDOW:  # packet ids wrap at 65,535
                outstanding.popleft().wait_for_publish(timeout=120)
            outstanding.append(publisher.publish(topic, payload))
        for info in outstanding:
            info.wait_for_publish(timeout=120)
        last = time.time()
    print(json.dumps({"first": first, "last": last, "count": len(items)}), flush=True)


if __name__ == "__main__":
    main()
