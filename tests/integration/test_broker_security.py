"""The shipped Mosquitto configuration (deploy/mosquitto/), run for real: passwords required, TLS offered,
and an ACL that lets a device publish only under its own id. The gateway connects over mqtts:// with its
own account, trusting a throwaway CA made here."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.embedded.mosquitto import Mosquitto, limits_conf
from gateway.embedded.ports import free_port, wait_for_port
from gateway.settings import Settings
from tests.support import REPO, running_gateway, scalar, sql, wait_until


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Wastegate test CA",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=directory)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
             "-out", "server.csr", cwd=directory)
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "san.cnf", "-out", "server.crt", cwd=directory)


@pytest.fixture
def secured_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, int, Path]]:
    certs = tmp_path / "certs"
    make_certificates(certs)
    data = tmp_path / "data"
    data.mkdir()
    passwd = data / "passwd"
    for user, password in (("wastegate", "gateway-secret"), ("T1", "t1-secret")):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if not passwd.exists() else []), str(passwd), user,
                        password], check=True, capture_output=True)
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "limits.conf").write_text(limits_conf())
    plain_port, tls_port = free_port(), free_port()
    # The shipped file, with this machine's paths and ports, and its TLS listener switched on.
    shipped = (REPO / "deploy/mosquitto/mosquitto.conf").read_text()
    config = (shipped.replace("/mosquitto/data/", f"{data}/")
              .replace("acl_file /mosquitto/config/acl", f"acl_file {REPO / 'deploy/mosquitto/acl'}")
              .replace("include_dir /mosquitto/config/conf.d", f"include_dir {conf_d}")
              .replace("listener 1883", f"listener {plain_port} 127.0.0.1")
              .replace("# listener 8883", f"listener {tls_port} 127.0.0.1")
              .replace("# certfile /mosquitto/certs/server.crt", f"certfile {certs / 'server.crt'}")
              .replace("# keyfile /mosquitto/certs/server.key", f"keyfile {certs / 'server.key'}")
              .replace("# cafile /mosquitto/certs/ca.crt", f"cafile {certs / 'ca.crt'}")
              .replace("log_dest stdout", "log_dest stderr"))
    assert f"listener {tls_port}" in config and "allow_anonymous false" in config
    import os

    if os.geteuid() == 0:
        config += "user root\n"
    broker = Mosquitto(tmp_path / "broker", port=plain_port, config=config).start()
    wait_for_port(tls_port)
    yield broker, tls_port, certs
    broker.stop()


def _connect(port: int, user: str | None, password: str | None) -> tuple[paho.Client, object]:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{user}-{time.monotonic_ns()}",
                         protocol=paho.MQTTv5)
    if user:
        client.username_pw_set(user, password)
    outcome: dict[str, object] = {}

    def on_connect(client: object, userdata: object, flags: object, reason: object, properties: object) -> None:
        outcome.setdefault("reason", reason)

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    wait_until(lambda: "reason" in outcome, timeout_s=10)
    return client, outcome["reason"]


def test_anonymous_and_wrong_passwords_are_refused(secured_broker: tuple[Mosquitto, int, Path]) -> None:
    broker, _, _ = secured_broker
    for user, password in ((None, None), ("T1", "wrong"), ("nobody", "x")):
        client, reason = _connect(broker.port, user, password)
        client.loop_stop()
        assert reason.is_failure, (user, reason)  # type: ignore[attr-defined]


def test_the_gateway_over_tls_and_a_device_only_under_its_own_id(
        settings: Settings, secured_broker: tuple[Mosquitto, int, Path]) -> None:
    broker, tls_port, certs = secured_broker
    settings = settings.model_copy(update={
        "mqtt_url": f"mqtts://wastegate:gateway-secret@127.0.0.1:{tls_port}", "mqtt_ca_file": certs / "ca.crt"})
    with running_gateway(settings):
        device, reason = _connect(broker.port, "T1", "t1-secret")
        assert not reason.is_failure  # type: ignore[attr-defined]
        ts = datetime.now(UTC).isoformat()
        for topic in ("trucks/T1/telemetry", "trucks/T2/telemetry"):  # its own id, and someone else's
            device.publish(topic, json.dumps({"ts": ts, "lat": 41.39, "lon": 2.16}), qos=1).wait_for_publish(5)
        wait_until(lambda: scalar(settings.database_url, "SELECT count(*) FROM telemetry") >= 1)
        time.sleep(1.0)
        device.disconnect()
        device.loop_stop()
    assert sql(settings.database_url, "SELECT device_id FROM telemetry") == [("T1",)]


def test_tls_with_an_unknown_ca_is_refused(settings: Settings, secured_broker: tuple[Mosquitto, int, Path],
                                           tmp_path: Path) -> None:
    _, tls_port, _ = secured_broker
    other = tmp_path / "other-ca"
    make_certificates(other)
    settings = settings.model_copy(update={
        "mqtt_url": f"mqtts://wastegate:gateway-secret@127.0.0.1:{tls_port}", "mqtt_ca_file": other / "ca.crt"})
    from gateway.app import Gateway

    gateway = Gateway(settings)
    import asyncio

    async def try_connect() -> bool:
        await gateway.source.start()
        connected = await gateway.source.wait_connected(3)
        await gateway.source.close()
        return connected

    assert asyncio.run(try_connect()) is False
