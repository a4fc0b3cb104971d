"""The codec contract (gateway/profiles/codecs/__init__.py), checked on every registered codec, whoever wrote it:
fed arbitrary bytes on any port, a codec returns a `Decoded` with canonical values only, or raises
`DecodeError("bad_payload", …)` naming the byte offset, and nothing else.

Nothing here names a codec: a new one is covered by registering it in `CODECS`, with no edit to this file.
`test_a_new_codec_touches_no_existing_test` checks that by running the codec tests with an extra codec.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.events import CANONICAL_FIELDS
from gateway.profiles.codecs import CODECS, Codec
from gateway.profiles.decoded import Decoded, DecodeError
from tests.support import REPO

_TEXT_FIELDS = {"rfid", "event"}
_BOOLEAN_FIELDS = {"tilted"}
_SNAKE_CASE = re.compile(r"[a-z][a-z0-9_]*")

# Any port, including None (an envelope without one) and the MAC and reserved ports a codec must refuse cleanly.
ports = st.none() | st.integers(min_value=0, max_value=255)


def check_outcome(codec: Codec, payload: bytes, f_port: int | None) -> str:
    """Runs one payload through a codec and fails on anything the contract does not allow."""
    try:
        decoded = codec(payload, f_port)
    except DecodeError as error:
        assert error.reason == "bad_payload", (payload.hex(), error.reason)
        assert "byte" in error.detail, (payload.hex(), error.detail)
        return "refused"
    assert isinstance(decoded, Decoded), type(decoded)
    # The network-server envelope supplies the time and the device, never the application payload.
    assert decoded.time is None and decoded.device_id is None, decoded
    unknown = set(decoded.values) - set(CANONICAL_FIELDS)
    assert not unknown, f"not canonical fields (they belong in extra): {sorted(unknown)}"
    for name, value in decoded.values.items():
        if name in _BOOLEAN_FIELDS:
            assert isinstance(value, bool), (name, value)
        elif name in _TEXT_FIELDS:
            assert isinstance(value, str), (name, value)
        else:
            assert isinstance(value, int | float) and not isinstance(value, bool), (name, value)
            assert math.isfinite(value), (name, value)
    for key in decoded.extra:
        assert isinstance(key, str) and _SNAKE_CASE.fullmatch(key), f"extra key {key!r} is not snake_case"
    # extra is stored as jsonb: NaN or an object JSON cannot hold would cost the message at commit time.
    json.dumps(dict(decoded.extra), allow_nan=False)
    return "decoded"


@pytest.mark.parametrize("name", sorted(CODECS))
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=st.binary(max_size=64), f_port=ports)
def test_arbitrary_bytes_meet_the_contract(name: str, payload: bytes, f_port: int | None) -> None:
    check_outcome(CODECS[name], payload, f_port)


@pytest.mark.parametrize("name", sorted(CODECS))
def test_the_empty_payload_is_refused_or_read(name: str) -> None:
    assert check_outcome(CODECS[name], b"", None) in ("decoded", "refused")


def test_the_registry_imports_first_in_a_fresh_interpreter() -> None:
    # The registry and the LoRaWAN decoders import each other's neighbours; the test session has usually
    # imported the decoders already, which would hide a broken import order.
    shipped = sorted(name for name, codec in CODECS.items() if codec.__module__.startswith("gateway.profiles.codecs."))
    assert shipped
    for module in sorted({CODECS[name].__module__ for name in shipped} | {"gateway.profiles.codecs"}):
        program = f"import {module}; from gateway.profiles.codecs import CODECS; print(*sorted(CODECS))"
        run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=False)
        assert run.returncode == 0, run.stderr
        assert run.stdout.split() == shipped


# Not a vendor's format: a codec of the kind the README's walk-through adds, to check that the checks above
# hold for it and catch one that breaks the contract.
def ultrasonic(payload: bytes, f_port: int | None) -> Decoded:
    if len(payload) != 3:
        raise DecodeError("bad_payload", f"a frame is 3 bytes, got {len(payload)} (byte 0)")
    return Decoded(values={"battery_pct": payload[0], "distance_mm": int.from_bytes(payload[1:], "big")},
                   extra={"raw_status": payload[0] >> 7})


def crashes_on_short_frames(payload: bytes, f_port: int | None) -> Decoded:
    return Decoded(values={"distance_mm": payload[0] * 256 + payload[1]})


def leaks_vendor_names(payload: bytes, f_port: int | None) -> Decoded:
    return Decoded(values={"distance": 12})


def test_the_checks_accept_a_codec_that_keeps_the_contract() -> None:
    assert check_outcome(ultrasonic, bytes([90, 1, 244]), None) == "decoded"
    assert check_outcome(ultrasonic, bytes([90, 1]), 85) == "refused"


@pytest.mark.parametrize(("codec", "payload", "problem"), [
    (crashes_on_short_frames, b"\x01", IndexError),
    (leaks_vendor_names, b"\x01\x02\x03", AssertionError),
])
def test_the_checks_catch_a_codec_that_breaks_the_contract(codec: Codec, payload: bytes,
                                                           problem: type[Exception]) -> None:
    with pytest.raises(problem):
        check_outcome(codec, payload, 85)


_PLUGIN = '''
from gateway.profiles.codecs import CODECS
from gateway.profiles.decoded import Decoded, DecodeError


def _us1(payload, f_port):
    if len(payload) != 3:
        raise DecodeError("bad_payload", f"a frame is 3 bytes, got {len(payload)} (byte 0)")
    return Decoded(values={"battery_pct": payload[0], "distance_mm": int.from_bytes(payload[1:], "big")})


def pytest_configure(config):
    CODECS["zz-extra-ultrasonic"] = _us1
'''


def test_a_new_codec_touches_no_existing_test(tmp_path: Path) -> None:
    """The codec tests, run with one more codec registered (as a new vendor module would be), all pass and
    cover it. Once, one asserted the registry held exactly the four Milesight codecs, one that a fresh
    interpreter counted four, and the random-bytes test read Milesight's layouts for every codec."""
    (tmp_path / "extra_codec_plugin.py").write_text(_PLUGIN)
    this_test = f"{Path(__file__).relative_to(REPO)}::test_a_new_codec_touches_no_existing_test"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "extra_codec_plugin", "-p", "no:cacheprovider",
         "--deselect", this_test, str(Path(__file__).parent)],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=300,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"},
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "test_arbitrary_bytes_meet_the_contract[zz-extra-ultrasonic] PASSED" in run.stdout, run.stdout[-4000:]
