"""A RabbitMQ node of its own on free loopback ports (AMQP, MQTT, Erlang distribution, epmd), with its
data in a directory of its own and the MQTT and consistent-hash plugins enabled offline: for the tests,
the benchmark, and trying scale-out on one machine. Debian's `rabbitmq-server` package provides it."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

from gateway.embedded.ports import free_port, stop_process, wait_for_port

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
PLUGINS = ("rabbitmq_mqtt", "rabbitmq_consistent_hash_exchange")


def find_rabbitmq() -> Path | None:
    return SERVER if SERVER.exists() else None


class RabbitMQ:
    def __init__(self, directory: Path) -> None:
        if find_rabbitmq() is None:
            raise FileNotFoundError("rabbitmq-server is not installed (Debian: apt-get install rabbitmq-server)")
        self.directory = directory
        self.node = f"wastegate-{uuid.uuid4().hex[:8]}@localhost"
        self.amqp_port = free_port()
        self.mqtt_port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://guest:guest@127.0.0.1:{self.mqtt_port}"

    def environment(self) -> dict[str, str]:
        home = self.directory / "home"
        return {
            **os.environ,
            # The scripts keep the Erlang cookie in $HOME: one of its own, not the system node's.
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.directory / "rabbitmq.pid"),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
        }

    def write_config(self) -> None:
        for sub in ("home", "mnesia", "log"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        (self.directory / "enabled_plugins").write_text(f"[{','.join(PLUGINS)}].\n", encoding="utf-8")
        (self.directory / "rabbitmq.conf").write_text("\n".join([
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}",
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt_port}",
            # guest may connect from loopback only, which is where everything here is
            "mqtt.allow_anonymous = false",
            "mqtt.vhost = /",
            "mqtt.exchange = amq.topic",
            # a device's session and its queued QoS 1 messages outlive a disconnection
            "mqtt.subscription_ttl = 86400000",
            "log.console = false",
            "log.file.level = warning",
            "vm_memory_high_watermark.absolute = 1GiB",
            "disk_free_limit.absolute = 50MB",
        ]) + "\n", encoding="utf-8")

    def start(self, timeout_s: float = 90.0) -> RabbitMQ:
        self.write_config()
        log = (self.directory / "server.log").open("ab")
        # With a terminal (or any readable stdin) the script starts an Erlang shell instead of the node.
        self.process = subprocess.Popen([str(SERVER)], env=self.environment(), stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=log, cwd=self.directory, start_new_session=True)
        try:
            # The MQTT listener opens after the plugins: when it answers, the node is ready for both.
            wait_for_port(self.amqp_port, timeout_s=timeout_s)
            wait_for_port(self.mqtt_port, timeout_s=timeout_s)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"rabbitmq did not start: {self.log_tail()}") from None
        return self

    def log_tail(self) -> str:
        texts = [p.read_text(errors="replace")[-3000:] for p in (self.directory / "server.log",
                                                                 *(self.directory / "log").glob("*.log")) if p.exists()]
        return "\n".join(texts)

    def ctl(self, *args: str) -> str:
        done = subprocess.run([str(CTL), "-n", self.node, *args], env=self.environment(), capture_output=True,
                              text=True, timeout=60, check=True)
        return done.stdout

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        try:
            if not kill:
                subprocess.run([str(CTL), "-n", self.node, "stop"], env=self.environment(), capture_output=True,
                               timeout=60, check=False)
        finally:
            stop_process(self.process, kill)
            self.process = None
            self._stop_epmd()

    def _stop_epmd(self) -> None:
        """The node started an epmd of its own on `epmd_port`: it outlives the node unless told to go."""
        epmd = shutil.which("epmd") or next((str(p) for p in Path("/usr/lib/erlang").glob("erts-*/bin/epmd")), None)
        if epmd:
            subprocess.run([epmd, "-port", str(self.epmd_port), "-kill"], capture_output=True, timeout=10,
                           check=False, env={**os.environ, "ERL_EPMD_PORT": str(self.epmd_port)})

    def __enter__(self) -> RabbitMQ:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
