"""Small real images for tests, and checks on PNG results."""

from __future__ import annotations

import io
import mimetypes
import struct
import zlib

from PIL import Image, ImageDraw

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_image(
    fmt: str = "JPEG",
    size: tuple[int, int] = (64, 48),
    color: tuple[int, int, int] = (200, 30, 30),
) -> bytes:
    """Encode a plain image with a contrasting centre square in JPEG, PNG, WEBP or GIF."""
    fmt = fmt.upper()
    if fmt == "JPG":
        fmt = "JPEG"
    image = Image.new("RGB", size, color)
    width, height = size
    inverse = (255 - color[0], 255 - color[1], 255 - color[2])
    ImageDraw.Draw(image).rectangle(
        (width // 4, height // 4, max(width // 4, 3 * width // 4 - 1), 3 * height // 4),
        fill=inverse,
    )
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG")
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def is_transparent_png(data: bytes) -> bool:
    """Whether data is a PNG with an alpha channel and at least one fully transparent pixel."""
    if not data.startswith(PNG_SIGNATURE):
        return False
    with Image.open(io.BytesIO(data)) as image:
        if image.format != "PNG" or image.mode not in ("RGBA", "LA"):
            return False
        low, _high = image.getchannel("A").getextrema()
        return bool(low == 0)


def sniff_mime(data: bytes, name: str | None = None) -> str:
    """The MIME type of common image bytes, else guessed from name, else octet-stream."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(PNG_SIGNATURE):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if name:
        guessed, _ = mimetypes.guess_type(name)
        if guessed:
            return guessed
    return "application/octet-stream"


def png_16bit(width: int, height: int, pixel: tuple[int, ...], *, color_type: int) -> bytes:
    """A 16-bit PNG (Pillow cannot write these) filled with one pixel value.

    `color_type` 0 is grey (one sample), 4 grey with alpha, 2 RGB and 6 RGBA.
    """
    samples = {0: 1, 4: 2, 2: 3, 6: 4}[color_type]
    if len(pixel) != samples:
        raise ValueError(f"colour type {color_type} needs {samples} samples")
    raw_pixel = b"".join(value.to_bytes(2, "big") for value in pixel)
    row = b"\x00" + raw_pixel * width
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    body = zlib.compress(row * height)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def huge_png(width: int, height: int, color: tuple[int, int, int] = (40, 120, 200)) -> bytes:
    """A plain RGB PNG of any size, built row by row: a tiny file with a huge pixel count."""
    row = b"\x00" + bytes(color) * width
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )
