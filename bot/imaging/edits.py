"""Image work for the cutout studio: plain functions, bytes in and bytes out, no Telegram code.

Everything here runs in the CPU pool's worker processes (`bot/cpu.py`), never on the event
loop. Decoding is bounded: an image over `MAX_PIXELS` is refused before its pixels are read, and
no function keeps more than two full-size RGBA copies alive at once (~4 bytes x pixels x 2).
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

# Freepik's own output limit; anything larger did not come from it.
MAX_PIXELS = 25_000_000
# Telegram's static stickers: one side exactly 512 px, the other at most 512, at most 512 KB.
STICKER_SIDE = 512
STICKER_MAX_BYTES = 512 * 1024
# Alpha at or below this counts as background when finding the subject: matting leaves faint
# noise (alpha 1-3) in the corners of real cutouts, which must not widen the box to the frame.
ALPHA_THRESHOLD = 8
# Crop margin: this share of the subject's longer side, at least `MIN_MARGIN` pixels.
CROP_MARGIN = 0.03
MIN_MARGIN = 2
JPEG_QUALITY = 92
# zlib level 3 is several times faster than the default 6 on large cutouts, for a few % size.
PNG_COMPRESS_LEVEL = 3
_WEBP_QUALITIES = (90, 80, 70, 55, 40)

RGB = tuple[int, int, int]


class ImagingError(ValueError):
    """The image cannot be worked on; subclasses say why."""


class ImageUnreadable(ImagingError):
    """Not an image Pillow can decode (or a truncated one)."""


class ImageTooLarge(ImagingError):
    """More than `MAX_PIXELS` pixels."""


class NoSubject(ImagingError):
    """The image is fully transparent: there is nothing to trim to."""


# --- decoding ---------------------------------------------------------------------------------


def decode_rgba(data: bytes) -> Image.Image:
    """Decode `data` into an 8-bit RGBA image, refusing anything over `MAX_PIXELS`."""
    try:
        with warnings.catch_warnings():
            # Our own bound is far below Pillow's bomb warning; the check below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise ImageTooLarge(str(err)) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageUnreadable(str(err)) from err
    width, height = image.size
    if width * height > MAX_PIXELS:
        image.close()
        raise ImageTooLarge(f"{width}x{height} is over {MAX_PIXELS} pixels")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageUnreadable(str(err)) from err
    return to_rgba(image)


def to_rgba(image: Image.Image) -> Image.Image:
    """The image as 8-bit RGBA: palettes keep their transparency, 16-bit grey is scaled."""
    if image.mode == "RGBA":
        return image
    if image.mode.startswith("I;16") or image.mode == "I":
        # Pillow clips 16-bit values to 255 when converting to L; scale them instead.
        wide = image if image.mode == "I" else image.convert("I")
        image = wide.point(lambda value: value * (1 / 257)).convert("L")
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("PA")
    elif image.mode == "CMYK":
        image = image.convert("RGB")
    return image.convert("RGBA")


# --- geometry ---------------------------------------------------------------------------------


def subject_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """The bounding box of the pixels more opaque than `ALPHA_THRESHOLD`, or None."""
    lut = [0] * (ALPHA_THRESHOLD + 1) + [255] * (255 - ALPHA_THRESHOLD)
    return image.getchannel("A").point(lut).getbbox()


def with_margin(
    box: tuple[int, int, int, int], size: tuple[int, int], ratio: float = CROP_MARGIN
) -> tuple[int, int, int, int]:
    """`box` grown by a margin on every side, kept inside an image of `size`."""
    left, top, right, bottom = box
    margin = max(MIN_MARGIN, round(max(right - left, bottom - top) * ratio))
    width, height = size
    return (
        max(0, left - margin),
        max(0, top - margin),
        min(width, right + margin),
        min(height, bottom + margin),
    )


def fit_size(size: tuple[int, int], side: int = STICKER_SIDE) -> tuple[int, int]:
    """Scale `size` so its longer side is exactly `side` (the other at least 1 px)."""
    width, height = size
    if width >= height:
        return side, max(1, min(side, round(height * side / width)))
    return max(1, min(side, round(width * side / height))), side


def trimmed(image: Image.Image, margin: float | None = None) -> Image.Image:
    """The subject cut out of `image` (with a margin when given); `NoSubject` if none."""
    box = subject_box(image)
    if box is None:
        raise NoSubject("the image is fully transparent")
    if margin is not None:
        box = with_margin(box, image.size, margin)
    if box == (0, 0, *image.size):
        return image
    return image.crop(box)


# --- encoding ---------------------------------------------------------------------------------


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes (alpha kept)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def encode_jpeg(image: Image.Image) -> bytes:
    """JPEG bytes of an RGB image."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=False)
    return buffer.getvalue()


def encode_webp(image: Image.Image, max_bytes: int = STICKER_MAX_BYTES) -> bytes:
    """Static WEBP with alpha, lossless when it fits in `max_bytes`, else the best lossy fit."""
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", lossless=True, method=4)
    if buffer.tell() <= max_bytes:
        return buffer.getvalue()
    for quality in _WEBP_QUALITIES:
        buffer = io.BytesIO()
        image.save(buffer, format="WEBP", quality=quality, alpha_quality=100, method=4)
        if buffer.tell() <= max_bytes:
            return buffer.getvalue()
    raise ImagingError("the sticker does not fit in Telegram's size limit")


# --- what the studio buttons do -----------------------------------------------------------------


def sticker(data: bytes) -> bytes:
    """A static sticker: trimmed to the subject, longer side exactly 512 px, WEBP with alpha."""
    subject = trimmed(decode_rgba(data))
    # Big cutouts are first shrunk by whole factors (fast, in C), then finished with Lanczos.
    fitted = subject.resize(fit_size(subject.size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    del subject
    return encode_webp(fitted)


def crop(data: bytes, margin: float = CROP_MARGIN) -> bytes:
    """A PNG trimmed to the subject's alpha bounding box plus a small margin."""
    return encode_png(trimmed(decode_rgba(data), margin))


def flatten(data: bytes, color: RGB) -> bytes:
    """The cutout laid on a solid `color`, as a JPEG of the same pixel size."""
    image = decode_rgba(data)
    background = Image.new("RGB", image.size, color)
    # An RGBA mask means "use its alpha band": no separate copy of the alpha channel.
    background.paste(image, mask=image)
    del image
    return encode_jpeg(background)


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height from the header, without decoding the pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Image.DecompressionBombError as err:
        raise ImageTooLarge(str(err)) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageUnreadable(str(err)) from err
