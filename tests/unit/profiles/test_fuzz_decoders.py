"""Every shipped profile's decoder, fed arbitrary bytes and arbitrary JSON: only DecodeError or NotAReading
may come out, never another exception (a crash would cost the message, not the gateway, but is a bug)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.profiles.decoded import DecodeError, NotAReading
from gateway.profiles.loader import Profile, load_profiles
from tests.support import REPO

PROFILES = load_profiles(REPO / "device_profiles")
TOPIC_VALUES = {"device_id": "d1", "application_id": "a", "event": "up", "application": "app", "#": "up",
                "user": "u", "device": "d1"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=20,
)
# Documents shaped like what the decoders expect, with the values scrambled.
shaped = st.fixed_dictionaries({}, optional={
    "ts": json_values, "lat": json_values, "lon": json_values, "fill_pct": json_values, "data": json_values,
    "deviceInfo": st.fixed_dictionaries({"devEui": st.just("d1")}) | json_values, "fPort": json_values,
    "fCnt": json_values, "object": json_values, "_type": st.sampled_from(["location", "lwt", "transition", "x"]),
    "tst": json_values, "vel": json_values, "end_device_ids": st.fixed_dictionaries({"device_id": st.just("d1")}),
    "uplink_message": st.fixed_dictionaries({}, optional={"frm_payload": json_values, "f_port": json_values,
                                                          "f_cnt": json_values, "decoded_payload": json_values}),
    "event": json_values, "acc": json_values, "received_at": json_values, "time": json_values,
})


def _decode(profile: Profile, payload: bytes) -> None:
    with contextlib.suppress(DecodeError, NotAReading):
        profile.decoder.decode(payload, TOPIC_VALUES)


@pytest.mark.parametrize("name", sorted(PROFILES.by_name))
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(payload=st.binary(max_size=300))
def test_arbitrary_bytes(name: str, payload: bytes) -> None:
    _decode(PROFILES.by_name[name], payload)


@pytest.mark.parametrize("name", sorted(PROFILES.by_name))
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(document=json_values | shaped)
def test_arbitrary_json(name: str, document: Any) -> None:
    _decode(PROFILES.by_name[name], json.dumps(document, allow_nan=True).encode())
