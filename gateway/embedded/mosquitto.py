"""A Mosquitto broker on a free loopback port, with persistence in a directory of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from gateway.embedded.ports import free_port, stop_process, wait_for_port


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


def limits_conf() -> str:
    return resources.files("gateway.embedded").joinpath("limits.conf").read_text("utf-8")


class Mosquitto:
    def __init__(self, directory: Path, port: int | None = None, extra_conf: str = "",
                 config: str | None = None) -> None:
        """`config`, when given, is the whole configuration (its listeners included), written as is."""
        binary = find_mosquitto()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self.binary = binary
        self.directory = directory
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "mosquitto.conf"
        if self.config is not None:
            config.write_text(self.config, encoding="utf-8")
            return config
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.directory}/",
            "autosave_interval 1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # keep the files in our temporary directory writable
        config.write_text("\n".join(lines) + "\n" + limits_conf() + self.extra_conf + "\n", encoding="utf-8")
        return config

    def start(self) -> Mosquitto:
        config = self.write_config()
        log = (self.directory / "mosquitto.log").open("ab")
        self.process = subprocess.Popen([self.binary, "-c", str(config)], stdout=log, stderr=log)
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {(self.directory / 'mosquitto.log').read_text()}") from None
        return self

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        stop_process(self.process, kill)
        self.process = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
