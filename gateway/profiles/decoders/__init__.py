"""The registry of payload decoders: one config model (with a `type` tag) and the class it builds.

To add a decoder, write its module with a `…Config` model whose `build()` returns the decoder, and add
the config to `DecoderConfig` below. Binary sensor payloads need only a codec in `gateway/profiles/codecs/`,
used through the network-server decoders.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from gateway.profiles.decoded import Decoded, DecodeError, Decoder, NotAReading
from gateway.profiles.decoders.chirpstack import ChirpStackConfig
from gateway.profiles.decoders.json_mapping import JsonMappingConfig
from gateway.profiles.decoders.owntracks import OwnTracksConfig
from gateway.profiles.decoders.tts import TheThingsStackConfig

DecoderConfig = Annotated[
    JsonMappingConfig | ChirpStackConfig | TheThingsStackConfig | OwnTracksConfig, Field(discriminator="type")
]

__all__ = ["DecodeError", "Decoded", "Decoder", "DecoderConfig", "NotAReading"]
