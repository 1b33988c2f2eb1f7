"""The fake background removal: a real transparent PNG computed with Pillow."""

from __future__ import annotations

import io
import math
import os
import struct
import zlib
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw, UnidentifiedImageError

PREVIEW_PIXELS = 250_000
BACKGROUND_TOLERANCE = 24
PADDING_CHUNK = b"ruSt"  # ancillary, private, safe-to-copy: decoders skip it


class ImageError(ValueError):
    """The input could not be used; the message is what the API answers."""


@dataclass(frozen=True)
class Cutout:
    """The outputs of one removal."""

    size: tuple[int, int]
    input_format: str
    high: bytes
    preview: bytes
    jpeg: bytes


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def pad_png(png: bytes, padding: int) -> bytes:
    """Insert a private ancillary chunk of ``padding`` random bytes before IEND."""
    if padding <= 0:
        return png
    data = os.urandom(padding)
    chunk = (
        struct.pack(">I", len(data))
        + PADDING_CHUNK
        + data
        + struct.pack(">I", zlib.crc32(PADDING_CHUNK + data))
    )
    return png[:-12] + chunk + png[-12:]


def _alpha_mask(rgb: Image.Image) -> Image.Image:
    """Opaque where the pixel differs from the top-left colour and lies inside the ellipse."""
    width, height = rgb.size
    corner = rgb.getpixel((0, 0))
    background = Image.new("RGB", rgb.size, corner if isinstance(corner, tuple) else 0)
    red, green, blue = ImageChops.difference(rgb, background).split()
    distance = ImageChops.lighter(red, ImageChops.lighter(green, blue))
    lut = [0] * (BACKGROUND_TOLERANCE + 1) + [255] * (255 - BACKGROUND_TOLERANCE)
    keep = distance.point(lut)
    ellipse = Image.new("L", rgb.size, 0)
    ImageDraw.Draw(ellipse).ellipse((0, 0, width - 1, height - 1), fill=255)
    return ImageChops.multiply(keep, ellipse)


def remove_background(data: bytes, accepted_formats: set[str], padding: int = 0) -> Cutout:
    """Decode data and build the transparent PNG, its preview and a JPEG rendering."""
    try:
        with Image.open(io.BytesIO(data)) as source:
            fmt = source.format or ""
            if fmt not in accepted_formats:
                raise ImageError("Unsupported image format")
            source.load()
            rgb = source.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageError("Unsupported image format") from exc
    rgba = rgb.convert("RGBA")
    rgba.putalpha(_alpha_mask(rgb))
    width, height = rgba.size
    scale = min(0.5, math.sqrt(PREVIEW_PIXELS / (width * height)))
    preview = rgba.resize((max(1, round(width * scale)), max(1, round(height * scale))))
    jpeg = io.BytesIO()
    rgb.save(jpeg, format="JPEG")
    return Cutout(
        size=rgba.size,
        input_format=fmt,
        high=pad_png(_png(rgba), padding),
        preview=_png(preview),
        jpeg=jpeg.getvalue(),
    )
