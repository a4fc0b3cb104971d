"""The registry of payload decoders: one config model (with a `type` tag) and the class it builds.

To add a decoder, write its module with a `…Config` model whose `build()` returns the decoder, and list
the config here.
"""

from __future__ import annotations

from gateway.profiles.decoders.base import Decoded, DecodeError, Decoder
from gateway.profiles.decoders.json_mapping import JsonMappingConfig

# With a second decoder this becomes Annotated[A | B, Field(discriminator="type")].
DecoderConfig = JsonMappingConfig

__all__ = ["DecodeError", "Decoded", "Decoder", "DecoderConfig"]
