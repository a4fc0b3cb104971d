"""The amqtt broker (pure Python, MQTT 3.1.1) for the demo on machines without Mosquitto. Slower than
Mosquitto (~2,500 QoS 1 msg/s measured here), which is plenty for the demo, not for benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from gateway.embedded.ports import free_port, stop_process, wait_for_port


class AmqttBroker:
    protocol = "3.1.1"

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> AmqttBroker:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "amqtt.yaml"
        config.write_text(yaml.safe_dump({
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }))
        executable = shutil.which("amqtt") or str(Path(sys.executable).parent / "amqtt")
        log = (self.directory / "amqtt.log").open("ab")
        self.process = subprocess.Popen([executable, "-c", str(config)], stdout=log, stderr=log)
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"amqtt did not start: {(self.directory / 'amqtt.log').read_text()}") from None
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process(self.process)
        self.process = None

    def __enter__(self) -> AmqttBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
