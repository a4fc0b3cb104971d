from __future__ import annotations

import pytest

from gateway.settings import Settings
from gateway.sources.mqtt import BrokerAddress


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASTEGATE_MQTT_URL", "mqtts://gw:s%40cret@broker.city:8884")
    monkeypatch.setenv("WASTEGATE_API_PORT", "9000")
    monkeypatch.setenv("WASTEGATE_MQTT_EXTRA_SUBSCRIPTIONS", "bins/#, legacy/+/x")
    settings = Settings(_env_file=None)
    assert settings.api_port == 9000
    assert settings.mqtt_extra_subscriptions == ["bins/#", "legacy/+/x"]
    address = BrokerAddress.parse(settings.mqtt_url)
    assert address == BrokerAddress("broker.city", 8884, True, "gw", "s@cret")


def test_broker_url_defaults_and_errors() -> None:
    assert BrokerAddress.parse("mqtt://localhost").port == 1883
    assert BrokerAddress.parse("mqtts://localhost").port == 8883
    with pytest.raises(ValueError, match="mqtt:// or mqtts://"):
        BrokerAddress.parse("http://localhost")
