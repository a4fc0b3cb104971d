"""Free loopback ports and waiting for a server to listen."""

from __future__ import annotations

import random
import socket
import subprocess
import time

# Below Linux's ephemeral range (32768–60999), where the kernel picks the ports of outgoing connections
# (database clients, MQTT clients, a browser): a port handed out there can be taken by one of them before
# the server it was meant for binds it.
_RANGE = (20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, not handed out before by this process."""
    for _ in range(200):
        port = random.randrange(*_RANGE)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise OSError(f"no free port in {_RANGE[0]}–{_RANGE[1]}")


def wait_for_port(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s") from None
            time.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes], kill: bool = False, timeout_s: float = 10.0) -> None:
    """SIGTERM (or SIGKILL), then SIGKILL if it has not exited in time."""
    if kill:
        process.kill()
    else:
        process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
