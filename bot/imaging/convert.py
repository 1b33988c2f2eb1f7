"""Relay-mode conversions: any accepted image to a PNG Freepik takes, within a memory budget.

These run in the worker processes of `bot.cpu.CpuPool` (plain functions, bytes in, bytes out).
Dimensions are read from the header before any pixel is decoded, and large images are reduced
while they are decoded instead of after:

- JPEG, PNG, WebP, GIF and TIFF go through libvips (`pyvips`), whose thumbnail operation
  shrinks JPEGs on load and streams the other formats row by row: a 144 MP PNG is reduced to
  25 MP holding a few strips of it, never the whole image.
- BMP and HEIC (which libvips' binary wheel does not read) go through Pillow, which decodes the
  whole image: they are held to `MAX_PILLOW_PIXELS`, and reduced before gaining an alpha band.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

MAX_OUTPUT_PIXELS = 25_000_000  # Freepik's output limit; larger inputs are scaled down first
MAX_SOURCE_PIXELS = 200_000_000  # refused above this, whatever the format
MAX_PILLOW_PIXELS = 50_000_000  # formats decoded whole (BMP, HEIC): about 200 MB at most
_VIPS_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "TIFF", "MPO"})
_PNG_COMPRESSION = 3  # fast: Freepik fetches it once over a fast link

# The header check below is ours; Pillow's own bomb check would only warn under 2x its limit.
Image.MAX_IMAGE_PIXELS = MAX_SOURCE_PIXELS

try:  # HEIC/HEIF (iPhone photos) when the optional `heic` extra is installed
    from pillow_heif import register_heif_opener
except ImportError:  # pragma: no cover - depends on the installation
    HEIF_SUPPORT = False
else:
    register_heif_opener()
    HEIF_SUPPORT = True


class UnreadableImage(Exception):
    """The bytes are not an image this bot can decode."""


class TooManyPixels(Exception):
    """The image has more pixels than the bot will decode."""

    def __init__(self, width: int, height: int, limit: int) -> None:
        super().__init__(f"{width}x{height} is over {limit} pixels")
        self.width = width
        self.height = height
        self.limit = limit


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the header says: format and dimensions."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        """Width times height."""
        return self.width * self.height


def read_info(head: bytes) -> ImageInfo | None:
    """Format and dimensions from the first bytes of an image, without decoding pixels."""
    try:
        with warnings.catch_warnings():
            # Only the header is read: the size is judged by `check_pixels`, not by Pillow.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(head)) as image:
                if image.format is None:
                    return None
                return ImageInfo(image.format, image.width, image.height)
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
    ):
        return None


def check_pixels(info: ImageInfo) -> None:
    """Raise `TooManyPixels` for an image the bot will not decode."""
    limit = MAX_SOURCE_PIXELS if info.format in _VIPS_FORMATS else MAX_PILLOW_PIXELS
    if info.pixels > limit:
        raise TooManyPixels(info.width, info.height, limit)


def convert_for_freepik(data: bytes) -> bytes:
    """A PNG (RGBA) of the first frame of the image, reduced to at most 25 MP."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            info = ImageInfo(probe.format or "", probe.width, probe.height)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise UnreadableImage(type(err).__name__) from err
    except Image.DecompressionBombError as err:
        raise UnreadableImage("decompression bomb") from err
    check_pixels(info)
    if info.format in _VIPS_FORMATS:
        return _with_vips(data, info)
    return _with_pillow(data, info)


def _target(info: ImageInfo) -> tuple[int, int]:
    if info.pixels <= MAX_OUTPUT_PIXELS:
        return info.width, info.height
    scale = math.sqrt(MAX_OUTPUT_PIXELS / info.pixels)
    return max(1, int(info.width * scale)), max(1, int(info.height * scale))


def _with_vips(data: bytes, info: ImageInfo) -> bytes:
    # One thread per worker process (IMAGE_WORKERS already gives one worker per core), set
    # before libvips starts; imported in the workers only.
    os.environ.setdefault("VIPS_CONCURRENCY", "1")
    import pyvips  # type: ignore[import-untyped]

    pyvips.cache_set_max(0)  # no operation cache: nothing is kept between conversions

    width, height = _target(info)
    try:
        # `size="down"` never enlarges; the first page or frame only; no disk cache.
        image = pyvips.Image.thumbnail_buffer(
            data, width, height=height, size="down", no_rotate=True
        )
        if image.interpretation != "srgb":
            image = image.colourspace("srgb")  # grey, CMYK, 16-bit: 8-bit sRGB
        if image.bands in (1, 3):
            image = image.bandjoin(255)
        if image.format != "uchar":
            image = image.cast("uchar")
        return bytes(image.pngsave_buffer(compression=_PNG_COMPRESSION))
    except pyvips.Error as err:
        raise UnreadableImage(str(err).splitlines()[0][:200]) from err


def _with_pillow(data: bytes, info: ImageInfo) -> bytes:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.seek(0)
            frame = image.convert("RGBA" if _has_alpha(image) else "RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise UnreadableImage(type(err).__name__) from err
    target = _target(info)
    if frame.size != target:
        frame = frame.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if frame.mode != "RGBA":
        frame = frame.convert("RGBA")  # at the reduced size
    out = io.BytesIO()
    frame.save(out, format="PNG", compress_level=_PNG_COMPRESSION)
    return out.getvalue()


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
