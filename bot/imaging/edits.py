"""Image work for the cutout studio: plain functions, bytes in and bytes out, no Telegram code.

Everything here runs in the CPU pool's worker processes (`bot/imaging/pool.py`), never on the event
loop. Decoding is bounded: an image over `MAX_PIXELS` is refused before its pixels are read, and
no function keeps more than two full-size RGBA copies alive at once (~4 bytes x pixels x 2).
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageChops, ImageFilter, ImageOps, UnidentifiedImageError

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
# Marketplace main image (Amazon's rule): square, pure white, the product filling 85% of it,
# at least 1600 px for zoom.
SHOP_SIDE = 2000
SHOP_FILL = 0.85
SHOP_JPEG_QUALITY = 95
# The subject on the user's own photo: at most this share of its width and height.
BACKGROUND_FILL = 0.90
# Drop shadow, as shares of the subject's longer side: how far down, how soft; and how dark.
SHADOW_OFFSET = 0.03
SHADOW_BLUR = 0.02
SHADOW_OPACITY = 0.5
# Outlined sticker: the white ring's width in sticker pixels, and the alpha from which a pixel
# counts as subject when drawing it (faint matting haze gets no ring of its own).
OUTLINE_WIDTH = 8
OUTLINE_ALPHA = 64

RGB = tuple[int, int, int]
WHITE: RGB = (255, 255, 255)


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
    return to_rgba(_decode(data))


def decode_photo(data: bytes) -> Image.Image:
    """Decode a photo into 8-bit RGB, upright (EXIF orientation applied), transparency on white."""
    image = ImageOps.exif_transpose(_decode(data))
    if image.mode == "RGB":
        return image
    rgba = to_rgba(image)
    flat = Image.new("RGB", rgba.size, WHITE)
    flat.paste(rgba, mask=rgba)
    return flat


def _decode(data: bytes) -> Image.Image:
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
    return image


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


def fit_within(size: tuple[int, int], frame: tuple[int, int], share: float) -> tuple[int, int]:
    """`size` scaled up or down to the largest that fits in `share` of `frame`, same aspect."""
    width, height = size
    box_width = max(1, int(frame[0] * share))
    box_height = max(1, int(frame[1] * share))
    scale = min(box_width / width, box_height / height)
    return (
        max(1, min(box_width, round(width * scale))),
        max(1, min(box_height, round(height * scale))),
    )


def shadow_geometry(size: tuple[int, int]) -> tuple[int, int, int]:
    """The shadow's offset down, blur radius and the padding around the subject that holds it."""
    longer = max(size)
    offset = max(2, round(longer * SHADOW_OFFSET))
    blur = max(1, round(longer * SHADOW_BLUR))
    # A Gaussian is invisible (under half an 8-bit step) three radii out.
    return offset, blur, 3 * blur


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


def resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` at `size` with Lanczos (alpha premultiplied), or itself when already that size."""
    if image.size == size:
        return image
    # Big cutouts are first shrunk by whole factors (fast, in C), then finished with Lanczos.
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def dilated(mask: Image.Image, radius: int) -> Image.Image:
    """A 0/255 mask grown by about `radius` px in every direction, with a soft outer edge."""
    # Alternating 3x3 squares and crosses grows an octagon, close to a disc; one px a step.
    for step in range(radius):
        if step % 2:
            mask = mask.filter(ImageFilter.MaxFilter(3))
        else:
            grown = mask
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                grown = ImageChops.lighter(grown, ImageChops.offset(mask, dx, dy))
            mask = grown
    return mask.filter(ImageFilter.GaussianBlur(0.7))


# --- encoding ---------------------------------------------------------------------------------


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes (alpha kept)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def encode_jpeg(image: Image.Image, quality: int = JPEG_QUALITY, subsampling: int = -1) -> bytes:
    """JPEG bytes of an RGB image (`subsampling` 0 keeps full colour resolution)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=False, subsampling=subsampling)
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
    fitted = resized(subject, fit_size(subject.size))
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


def shop_photo(data: bytes) -> bytes:
    """A marketplace main image: 2000 px square JPEG, pure white, the subject 85% and centred."""
    subject = trimmed(decode_rgba(data))
    fitted = resized(subject, fit_size(subject.size, round(SHOP_SIDE * SHOP_FILL)))
    del subject
    canvas = Image.new("RGB", (SHOP_SIDE, SHOP_SIDE), WHITE)
    width, height = fitted.size
    canvas.paste(fitted, ((SHOP_SIDE - width) // 2, (SHOP_SIDE - height) // 2), mask=fitted)
    # Full-resolution colour: chroma subsampling would tint the white next to the subject.
    return encode_jpeg(canvas, quality=SHOP_JPEG_QUALITY, subsampling=0)


def with_background(cutout: bytes, background: bytes) -> bytes:
    """The subject on the user's photo: a JPEG of the photo's size, subject bottom-centred."""
    photo = decode_photo(background)
    subject = trimmed(decode_rgba(cutout))
    fitted = resized(subject, fit_within(subject.size, photo.size, BACKGROUND_FILL))
    del subject
    width, height = fitted.size
    photo.paste(fitted, ((photo.width - width) // 2, photo.height - height), mask=fitted)
    del fitted
    return encode_jpeg(photo)


def shadow(data: bytes) -> bytes:
    """A PNG of the subject over a soft drop shadow (offset down, blurred, half transparent)."""
    subject = trimmed(decode_rgba(data))
    offset, blur, pad = shadow_geometry(subject.size)
    width, height = subject.size
    size = (width + 2 * pad, height + 2 * pad + offset)
    dark = subject.getchannel("A").point(lambda alpha: round(alpha * SHADOW_OPACITY))
    mask = Image.new("L", size, 0)
    mask.paste(dark, (pad, pad + offset))
    del dark
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    canvas.putalpha(mask.filter(ImageFilter.GaussianBlur(blur)))
    del mask
    canvas.alpha_composite(subject, (pad, pad))
    del subject
    return encode_png(canvas)


def outline_sticker(data: bytes) -> bytes:
    """A static sticker with an opaque white ring `OUTLINE_WIDTH` px wide around the subject."""
    subject = trimmed(decode_rgba(data))
    ring = OUTLINE_WIDTH
    fitted = resized(subject, fit_size(subject.size, STICKER_SIDE - 2 * ring))
    del subject
    width, height = fitted.size
    size = (width + 2 * ring, height + 2 * ring)
    lut = [0] * OUTLINE_ALPHA + [255] * (256 - OUTLINE_ALPHA)
    mask = Image.new("L", size, 0)
    mask.paste(fitted.getchannel("A").point(lut), (ring, ring))
    canvas = Image.new("RGBA", size, (*WHITE, 0))
    canvas.putalpha(dilated(mask, ring))
    canvas.alpha_composite(fitted, (ring, ring))
    return encode_webp(canvas)


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
