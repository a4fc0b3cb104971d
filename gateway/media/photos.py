"""A photo as it is stored: checked by its content (JPEG, PNG, WebP, or HEIC with pillow-heif), at most
`max_bytes` and `max_pixels` (a decompression bomb is refused before it is decoded), turned the way its
EXIF orientation says, re-encoded as JPEG without any metadata (no EXIF, no GPS position, no camera, no
ICC profile: a citizen's home must not leak), with a thumbnail."""

from __future__ import annotations

import asyncio
import io
import secrets
import warnings
from dataclasses import dataclass, field

from PIL import Image, ImageOps, UnidentifiedImageError

try:  # HEIC, as phones take them, when the library is there
    from pillow_heif import register_heif_opener

    register_heif_opener()
    ACCEPTED: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "HEIF")
except ImportError:  # pragma: no cover - pillow-heif is a dependency; without it HEIC is refused
    ACCEPTED = ("JPEG", "PNG", "WEBP")

THUMBNAIL_PX = 320
JPEG_QUALITY = 85


class PhotoRefused(ValueError):
    """Not a photo that can be stored; the message says why (HTTP 400)."""


@dataclass(frozen=True)
class Photo:
    image: bytes  # JPEG, without metadata
    thumbnail: bytes
    width: int
    height: int
    original_format: str

    content_type: str = "image/jpeg"
    # what it is served by: unguessable, made with it so that its address is known before it is stored
    token: str = field(default_factory=lambda: secrets.token_urlsafe(18))

    def url(self, base_url: str) -> str:
        return f"{base_url}/photos/{self.token}.jpg"


async def clean_upload(data: bytes, max_bytes: int, max_pixels: int) -> Photo:
    """`process_photo` off the event loop (decoding a large photo takes a while)."""
    return await asyncio.to_thread(process_photo, data, max_bytes, max_pixels)


def process_photo(data: bytes, max_bytes: int, max_pixels: int) -> Photo:
    if not data:
        raise PhotoRefused("the file is empty")
    if len(data) > max_bytes:
        raise PhotoRefused(f"the photo is larger than {max_bytes // (1024 * 1024)} MiB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
            if image.format not in ACCEPTED:
                raise PhotoRefused(f"a {image.format} file is not accepted: send a JPEG, PNG, WebP or HEIC photo")
            width, height = image.size
            if width * height > max_pixels:
                raise PhotoRefused(f"the image has too many pixels ({width}×{height}); at most {max_pixels:,}")
            image.load()
    except PhotoRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PhotoRefused(f"the image has too many pixels; at most {max_pixels:,}") from None
    except UnidentifiedImageError:
        raise PhotoRefused("not a JPEG, PNG, WebP or HEIC image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise PhotoRefused(f"the image cannot be read ({exc})") from None
    original_format = str(image.format)
    upright = ImageOps.exif_transpose(image) or image
    clean = Image.new("RGB", upright.size)  # a new image: nothing of the file's metadata comes along
    clean.paste(upright.convert("RGB"))
    thumbnail = clean.copy()
    thumbnail.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    return Photo(_jpeg(clean), _jpeg(thumbnail), clean.width, clean.height, original_format)


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()
