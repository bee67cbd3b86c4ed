"""Images in requests: only `data:` URLs, decoded here under a byte and a pixel limit. The server never
fetches anything: `http(s)://`, `file://` and every other scheme are refused. A problem is a `BadImage` with
the HTTP status it maps to (400 malformed, 413 too large)."""
from __future__ import annotations

import base64
import binascii
import io
import re

from PIL import Image, UnidentifiedImageError

_DATA_URL = re.compile(r"^data:(?P<type>[^;,]*)(?P<params>(?:;[^;,]*)*?)(?P<b64>;base64)?,(?P<data>.*)$", re.DOTALL)
_SPACE = re.compile(rb"\s+")


class BadImage(Exception):
    """An image the server will not decode: `status` is 400 (malformed) or 413 (over a limit)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def decode_image_url(url: str, max_bytes: int, max_pixels: int) -> Image.Image:
    """An RGB image from a `data:image/…;base64,…` URL of at most `max_bytes` decoded bytes and `max_pixels`
    pixels."""
    if not isinstance(url, str):
        raise BadImage(400, "image_url.url must be a string")
    if not url.startswith("data:"):
        scheme = url.split(":", 1)[0][:16] if ":" in url else "(none)"
        raise BadImage(400, f"image URLs must be data: URLs (base64); scheme {scheme!r} refused: this server "
                            "fetches nothing")
    match = _DATA_URL.match(url)
    if match is None or not match["b64"]:
        raise BadImage(400, "malformed data URL: expected data:image/<type>;base64,<data>")
    media = match["type"].strip().lower()
    if media and not media.startswith("image/"):
        raise BadImage(400, f"data URL media type {media!r} is not an image")
    data = _SPACE.sub(b"", match["data"].encode("ascii", errors="replace"))
    if len(data) // 4 * 3 > max_bytes + 2:
        raise BadImage(413, f"image larger than the limit of {max_bytes} bytes")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadImage(400, "image data is not valid base64") from None
    if len(raw) > max_bytes:
        raise BadImage(413, f"image of {len(raw)} bytes is over the limit of {max_bytes}")
    try:
        image = Image.open(io.BytesIO(raw))
        width, height = image.size
        if width * height > max_pixels:
            raise BadImage(413, f"image of {width}x{height} pixels is over the limit of {max_pixels} pixels")
        image.load()
        return image.convert("RGB")
    except BadImage:
        raise
    except Image.DecompressionBombError:
        raise BadImage(413, f"image over the pixel limit of {max_pixels}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as err:
        raise BadImage(400, f"cannot decode the image ({type(err).__name__})") from None


__all__ = ["BadImage", "decode_image_url"]
