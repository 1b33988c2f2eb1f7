"""Image work for the cutout studio: plain functions, bytes in and bytes out, no Telegram code.

Everything here runs in the CPU pool's worker processes (`bot/imaging/pool.py`), never on the
event loop. It uses libvips (`pyvips`, one thread per worker): its PNG decoder and its PNG,
JPEG and WEBP encoders are several times faster than Pillow's, and a chain of operations is
evaluated strip by strip instead of one full-size copy per step. A cutout is decoded into memory
once (4 bytes x pixels, 100 MB at 25 MP) and everything after that streams. Decoding is bounded:
an image over `MAX_PIXELS` is refused from its header, before its pixels are read. Pillow only
decodes what libvips cannot read (BMP, ICO, ...).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import warnings
from array import array
from collections.abc import Iterator
from typing import Any

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
# zlib level 2 with the "up" row filter: on photos within a few % of the adaptive filters at
# level 6 (Pillow's default), in a fifth of the time; level 1 is a much weaker fast mode.
PNG_COMPRESS_LEVEL = 2
PNG_FILTER = "up"
_WEBP_QUALITIES = (90, 80, 70, 55, 40)
# libwebp effort (0-6). Lossless at 0 is four times faster than at 4 (30 instead of 160 ms
# on a 512 px sticker of a photo) for files about 1.5 times the size, far under the limit.
WEBP_LOSSLESS_EFFORT = 0
WEBP_LOSSY_EFFORT = 4
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

# Metadata kept in what is written (VipsForeignKeep): none; a user's photo may carry GPS EXIF.
_KEEP_NOTHING = 0

RGB = tuple[int, int, int]
WHITE: RGB = (255, 255, 255)
VipsImage = Any  # pyvips has no type hints


class ImagingError(ValueError):
    """The image cannot be worked on; subclasses say why."""


class ImageUnreadable(ImagingError):
    """Not an image libvips or Pillow can decode (or a truncated one)."""


class ImageTooLarge(ImagingError):
    """More than `MAX_PIXELS` pixels."""


class NoSubject(ImagingError):
    """The image is fully transparent: there is nothing to trim to."""


# --- decoding ---------------------------------------------------------------------------------


@functools.cache
def vips() -> Any:
    """pyvips, imported on first use (in the pool's workers only) with one libvips thread."""
    # The pool runs one worker per core already; libvips reads this once, when it starts.
    os.environ.setdefault("VIPS_CONCURRENCY", "1")
    import pyvips  # type: ignore[import-untyped]

    pyvips.cache_set_max(0)  # no operation cache: nothing is kept between calls
    return pyvips


@contextlib.contextmanager
def _reading() -> Iterator[None]:
    # Pixels are decoded lazily, inside whichever operation first needs them: a truncated or
    # corrupt image fails there, as a pyvips.Error.
    error = vips().Error
    try:
        yield
    except error as err:
        raise ImageUnreadable(str(err).strip().splitlines()[-1][:200]) from err


def open_image(data: bytes) -> VipsImage:
    """The image with only its header read, refused over `MAX_PIXELS`; one top-to-bottom pass."""
    pyvips = vips()
    try:
        image = pyvips.Image.new_from_buffer(data, "", access="sequential", fail_on="error")
    except pyvips.Error:
        image = _decoded_by_pillow(data)
    _check_pixels(image.width, image.height)
    return image


def decode_rgba(data: bytes) -> VipsImage:
    """Decode `data` into memory as 8-bit sRGB with alpha, refusing anything over `MAX_PIXELS`."""
    with _reading():
        return to_rgba(open_image(data)).copy_memory()


def decode_photo(data: bytes) -> VipsImage:
    """A photo as 8-bit sRGB, upright (EXIF orientation applied), transparency laid on white."""
    with _reading():
        image = _srgb(open_image(data))
        if image.hasalpha():
            image = image.flatten(background=list(WHITE))
        if image.get_typeof("orientation") and image.get("orientation") not in (0, 1):
            # Turning needs the whole image: decode it into memory first (one pass).
            return image.copy_memory().autorot()
        return image  # upright: decoded as it is used, top to bottom


def to_rgba(image: VipsImage) -> VipsImage:
    """The image as 8-bit sRGB plus alpha: grey, 16-bit, CMYK and palettes converted."""
    image = _srgb(image)
    return image if image.hasalpha() else image.bandjoin_const([255])


def _srgb(image: VipsImage) -> VipsImage:
    if image.interpretation != "srgb" or image.format != "uchar":
        # 16-bit values are scaled (x / 257, rounded), not clipped; CMYK goes through a profile.
        image = image.colourspace("srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    return image.extract_band(0, n=4) if image.bands > 4 else image


def _decoded_by_pillow(data: bytes) -> VipsImage:
    """A format libvips does not read, decoded whole by Pillow into 8-bit RGBA."""
    image = _pillow_rgba(_pillow_open(data))
    rgba = vips().Image.new_from_memory(image.tobytes(), image.width, image.height, 4, "uchar")
    return rgba.copy(interpretation="srgb")


def _check_pixels(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ImageTooLarge(f"{width}x{height} is over {MAX_PIXELS} pixels")


def _pillow_header(data: bytes) -> Image.Image:
    """The image as Pillow opens it: its header read, its pixels not yet."""
    try:
        with warnings.catch_warnings():
            # Our own bound is far below Pillow's bomb warning: `MAX_PIXELS` decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise ImageTooLarge(str(err)) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageUnreadable(str(err)) from err


def _pillow_open(data: bytes) -> Image.Image:
    image = _pillow_header(data)
    try:
        _check_pixels(*image.size)
    except ImageTooLarge:
        image.close()
        raise
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageUnreadable(str(err)) from err
    return image


def _pillow_rgba(image: Image.Image) -> Image.Image:
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


def size_of(image: VipsImage) -> tuple[int, int]:
    """Width and height of a pyvips image."""
    return int(image.width), int(image.height)


def subject_box(image: VipsImage) -> tuple[int, int, int, int] | None:
    """The bounding box of the pixels more opaque than `ALPHA_THRESHOLD`, or None."""
    # Column and row sums of the mask, in one pass; the box is where they are not zero.
    columns, rows = (image[3] > ALPHA_THRESHOLD).project()
    xs = _nonzero(columns)
    ys = _nonzero(rows)
    if xs is None or ys is None:
        return None
    return xs[0], ys[0], xs[1] + 1, ys[1] + 1


def _nonzero(sums: VipsImage) -> tuple[int, int] | None:
    values = array("I")
    values.frombytes(sums.cast("uint").write_to_memory())
    hits = [index for index, value in enumerate(values) if value]
    return (hits[0], hits[-1]) if hits else None


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


def trimmed(image: VipsImage, margin: float | None = None) -> VipsImage:
    """The subject cut out of `image` (with a margin when given); `NoSubject` if none."""
    box = subject_box(image)
    if box is None:
        raise NoSubject("the image is fully transparent")
    if margin is not None:
        box = with_margin(box, size_of(image), margin)
    if box == (0, 0, *size_of(image)):
        return image
    left, top, right, bottom = box
    return image.crop(left, top, right - left, bottom - top)


def resized(image: VipsImage, size: tuple[int, int]) -> VipsImage:
    """`image` at exactly `size`, Lanczos on premultiplied alpha (soft edges keep their colour)."""
    if size_of(image) == size:
        return image
    width, height = size
    # Big reductions first shrink by whole factors (box filter), then finish with Lanczos; the
    # alpha is premultiplied around it. EXIF orientation was applied or ignored when decoding.
    return image.thumbnail_image(width, height=height, size="force", no_rotate=True)


def dilated(mask: VipsImage, radius: int) -> VipsImage:
    """A 0/255 mask grown by a disc of `radius` px, with a soft (anti-aliased) outer edge."""
    # For dilation, 255 in the structuring element is "part of the disc", 128 "don't care".
    disc = [
        [255 if dx * dx + dy * dy <= radius * radius else 128 for dx in range(-radius, radius + 1)]
        for dy in range(-radius, radius + 1)
    ]
    grown = mask.morph(vips().Image.new_from_list(disc), "dilate")
    return grown.gaussblur(0.7).cast("uchar")


def drop_shadow(
    alpha: VipsImage, size: tuple[int, int], at: tuple[int, int], blur: int
) -> VipsImage:
    """The shadow's alpha: `alpha` placed at `at` in a frame of `size`, blurred, made lighter."""
    width, height = size
    # A blurred shadow has no detail finer than its blur: compute it at 1/factor of the size
    # (a cheap small blur) and enlarge it back, instead of a wide blur over every pixel.
    factor = max(1, blur // 4)
    small = alpha.shrink(factor, factor) if factor > 1 else alpha
    small = small.embed(
        at[0] // factor, at[1] // factor, -(-width // factor), -(-height // factor)
    )
    shade = (small.gaussblur(blur / factor) * SHADOW_OPACITY + 0.5).cast("uchar")
    if factor > 1:
        # Bilinear up to half the size, then each pixel doubled: a fifth of the time of bilinear
        # all the way, and the shadow changes by under one level between neighbours.
        double = 2 if factor >= 4 else 1
        shade = shade.resize(factor / double, kernel="linear")
        if double > 1:
            shade = shade.zoom(double, double)
        shade = shade.embed(0, 0, width, height, extend="copy")
    return shade


def over_shadow(subject: VipsImage, shade: VipsImage, at: tuple[int, int]) -> VipsImage:
    """`subject` (RGBA) at `at` over a black shadow whose alpha is `shade`, as RGBA."""
    width, height = size_of(shade)
    alpha = subject[3].embed(at[0], at[1], width, height)
    colour = subject.extract_band(0, n=3).embed(at[0], at[1], width, height)
    # Porter-Duff "over" in 8-bit integer blends (a float composite costs three times as much):
    # alpha = a + shade * (1 - a); the colour keeps a / alpha of its strength, the rest is black.
    combined = alpha.ifthenelse(255, shade, blend=True)
    strength = (alpha * 255 / combined + 0.5).cast("uchar")  # x / 0 is 0 in libvips
    return strength.ifthenelse(colour, 0, blend=True).bandjoin(combined)


# --- encoding ---------------------------------------------------------------------------------


def encode_png(image: VipsImage) -> bytes:
    """PNG bytes (alpha kept)."""
    return bytes(
        image.pngsave_buffer(compression=PNG_COMPRESS_LEVEL, filter=PNG_FILTER, keep=_KEEP_NOTHING)
    )


def encode_jpeg(
    image: VipsImage, quality: int = JPEG_QUALITY, chroma_subsampling: bool = True
) -> bytes:
    """JPEG bytes of an RGB image (without subsampling, colour keeps its full resolution)."""
    return bytes(
        image.jpegsave_buffer(
            Q=quality,
            subsample_mode="on" if chroma_subsampling else "off",
            keep=_KEEP_NOTHING,
        )
    )


def encode_webp(image: VipsImage, max_bytes: int = STICKER_MAX_BYTES) -> bytes:
    """Static WEBP with alpha, lossless when it fits in `max_bytes`, else the best lossy fit."""
    image = image.copy_memory()  # encoded up to six times: compute the pixels once
    data = bytes(
        image.webpsave_buffer(lossless=True, effort=WEBP_LOSSLESS_EFFORT, keep=_KEEP_NOTHING)
    )
    if len(data) <= max_bytes:
        return data
    for quality in _WEBP_QUALITIES:
        data = bytes(
            image.webpsave_buffer(
                Q=quality, alpha_q=100, effort=WEBP_LOSSY_EFFORT, keep=_KEEP_NOTHING
            )
        )
        if len(data) <= max_bytes:
            return data
    raise ImagingError("the sticker does not fit in Telegram's size limit")


# --- what the studio buttons do -----------------------------------------------------------------


def sticker(data: bytes) -> bytes:
    """A static sticker: trimmed to the subject, longer side exactly 512 px, WEBP with alpha."""
    with _reading():
        subject = trimmed(decode_rgba(data))
        return encode_webp(resized(subject, fit_size(size_of(subject))))


def crop(data: bytes, margin: float = CROP_MARGIN) -> bytes:
    """A PNG trimmed to the subject's alpha bounding box plus a small margin."""
    with _reading():
        return encode_png(trimmed(decode_rgba(data), margin))


def flatten(data: bytes, color: RGB) -> bytes:
    """The cutout laid on a solid `color`, as a JPEG of the same pixel size."""
    with _reading():
        # Nothing to measure first: decoded, blended and encoded strip by strip.
        return encode_jpeg(to_rgba(open_image(data)).flatten(background=list(color)))


def shop_photo(data: bytes) -> bytes:
    """A marketplace main image: 2000 px square JPEG, pure white, the subject 85% and centred."""
    with _reading():
        subject = trimmed(decode_rgba(data))
        size = fit_size(size_of(subject), round(SHOP_SIDE * SHOP_FILL))
        # Laid on white first, then scaled: the same pixels as scaling with premultiplied alpha
        # (both are linear), with three bands to scale instead of four and no alpha to undo.
        fitted = resized(subject.flatten(background=list(WHITE)), size)
        width, height = size
        canvas = fitted.embed(
            (SHOP_SIDE - width) // 2,
            (SHOP_SIDE - height) // 2,
            SHOP_SIDE,
            SHOP_SIDE,
            extend="background",
            background=list(WHITE),
        )
        # Full-resolution colour: chroma subsampling would tint the white next to the subject.
        return encode_jpeg(canvas, quality=SHOP_JPEG_QUALITY, chroma_subsampling=False)


def with_background(cutout: bytes, background: bytes) -> bytes:
    """The subject on the user's photo: a JPEG of the photo's size, subject bottom-centred."""
    with _reading():
        photo = decode_photo(background)
        subject = trimmed(decode_rgba(cutout))
        frame = size_of(photo)
        fitted = resized(subject, fit_within(size_of(subject), frame, BACKGROUND_FILL))
        width, height = size_of(fitted)
        left, top = (frame[0] - width) // 2, frame[1] - height
        colour = fitted.extract_band(0, n=3).embed(left, top, *frame)
        alpha = fitted[3].embed(left, top, *frame)
        # Blending by the alpha band: the photo where it is 0, the subject where it is 255.
        return encode_jpeg(alpha.ifthenelse(colour, photo, blend=True))


def shadow(data: bytes) -> bytes:
    """A PNG of the subject over a soft drop shadow (offset down, blurred, half transparent)."""
    with _reading():
        subject = trimmed(decode_rgba(data))
        width, height = size_of(subject)
        offset, blur, pad = shadow_geometry((width, height))
        size = (width + 2 * pad, height + 2 * pad + offset)
        shade = drop_shadow(subject[3], size, (pad, pad + offset), blur)
        return encode_png(over_shadow(subject, shade, (pad, pad)))


def outline_sticker(data: bytes) -> bytes:
    """A static sticker with an opaque white ring `OUTLINE_WIDTH` px wide around the subject."""
    with _reading():
        subject = trimmed(decode_rgba(data))
        ring = OUTLINE_WIDTH
        fitted = resized(subject, fit_size(size_of(subject), STICKER_SIDE - 2 * ring))
        fitted = fitted.copy_memory()  # read twice below
        width, height = size_of(fitted)
        size = (width + 2 * ring, height + 2 * ring)
        mask = (fitted[3] >= OUTLINE_ALPHA).embed(ring, ring, *size)
        halo = dilated(mask, ring)
        white = halo.new_from_image(list(WHITE)).bandjoin(halo).copy(interpretation="srgb")
        composed = white.composite2(fitted, "over", x=ring, y=ring)
        return encode_webp(composed.cast("uchar"))


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height from the header, without decoding the pixels."""
    with _pillow_header(data) as image:
        return image.size


def check_size(data: bytes) -> None:
    """Refuse an image over `MAX_PIXELS` (or unreadable) from its header alone."""
    _check_pixels(*image_size(data))
