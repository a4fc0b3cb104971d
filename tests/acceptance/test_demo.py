"""Acceptance: the demo as a newcomer runs it, shortened (an hour of the city at ×180), on the pure-Python
broker as on a machine without Mosquitto: incidents of at least six service codes, the API and the
console (with the sign-in the demo prints) answering, the rule lab's backtest of the demo's history
reproducing the store's incidents, precision and recall of at least 0.95 against the simulator's ground
truth, nothing left behind."""

from __future__ import annotations

import glob
import io
import subprocess
import tempfile

from rich.console import Console

from gateway.demo import exit_code, run_demo
from gateway.embedded.ports import free_port


def test_the_demo_without_mosquitto() -> None:
    before = set(glob.glob(f"{tempfile.gettempdir()}/wastegate-demo-*"))
    screen = io.StringIO()
    result = run_demo(duration_s=24, api_port=free_port(), speedup=180, live=True,
                      console=Console(file=screen, width=140), broker_kind="amqtt")
    output = screen.getvalue()
    assert "AmqttBroker" in output and "open incidents by category" in output
    assert "/console/" in output and "sign in as demo / demo-wastegate" in output
    assert len(result.service_codes) >= 6, output
    assert result.score.precision >= 0.95 and result.score.recall >= 0.95, output
    assert exit_code(result) == 0
    assert result.api_answered
    assert "rule lab" in output and "the backtest reproduces the store" in output, output
    assert result.backtest_reproduces_store
    assert set(glob.glob(f"{tempfile.gettempdir()}/wastegate-demo-*")) == before
    leftovers = subprocess.run(["pgrep", "-f", "wastegate-demo-"], capture_output=True, text=True).stdout.split()
    assert leftovers == []
