"""The pipeline a city would otherwise write, in its own process:
`python -m bench.naive MQTT_URL DB_URL N prepare|drain [RULES_DIR]`.

paho callback → json.loads → one INSERT per message (autocommit) → a loop over every zone of RULES_DIR/zones
per position.
`prepare` makes its persistent session; `drain` then takes the backlog and prints when the N-th message was
stored."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import psycopg
import shapely

from gateway.rules.zones import load_zones

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    url, database_url, count, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    rules_dir = Path(sys.argv[5]) if len(sys.argv) > 5 else REPO / "rules"
    zones = [z.geometry for layer in load_zones(rules_dir / "zones").values() for z in layer]
    conn = psycopg.connect(database_url, autocommit=True)
    conn.execute("CREATE TABLE IF NOT EXISTS naive_telemetry (topic text, device_time text, payload jsonb, "
                 "inside integer)")
    done = threading.Event()
    seen = 0
    first = 0.0

    def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        nonlocal seen, first
        first = first or time.time()
        document = json.loads(msg.payload)
        inside = 0
        lat, lon = document.get("lat"), document.get("lon")
        if lat is not None and lon is not None:
            point = shapely.Point(lon, lat)
            inside = sum(1 for zone in zones if zone.contains(point))
        conn.execute("INSERT INTO naive_telemetry VALUES (%s, %s, %s, %s)",
                     (msg.topic, document.get("ts") or document.get("time"), json.dumps(document), inside))
        seen += 1
        if seen >= count:
            done.set()

    from bench.scenarios import _session_client, prepare_session

    if mode == "prepare":
        prepare_session(url, "bench-naive")
        return
    client = _session_client(url, "bench-naive")
    client.on_message = on_message
    client.loop_start()
    done.wait(timeout=900)
    print(json.dumps({"stored": seen, "first": first, "last": time.time()}), flush=True)
    client.loop_stop()


if __name__ == "__main__":
    main()
