"""The studio's image functions on real images: edges, odd formats, extremes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

import pytest
from PIL import Image, ImageDraw

from bot.imaging import edits as imaging
from tests.fakes import make_image
from tests.fakes.images import png_16bit
from tests.support import ROOT, opened, png, px

WHITE = (255, 255, 255)


def vpx(image: object, xy: tuple[int, int]) -> tuple[int, ...]:
    """A pixel of a pyvips image (what `decode_rgba` returns), as integers."""
    return tuple(int(value) for value in image(*xy))  # type: ignore[operator]


def soft_subject(size: tuple[int, int] = (200, 120)) -> Image.Image:
    """A red box at (60, 30)-(140, 90) whose edge fades out, plus faint matting noise."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rectangle((60, 30, 139, 89), fill=(220, 20, 20, 255))
    # A one-pixel half-transparent rim: part of the subject, and kept exactly as it was.
    draw.rectangle((59, 29, 140, 90), outline=(220, 20, 20, 128))
    # Faint noise in the corners, as real matting leaves: not part of the subject.
    image.putpixel((0, 0), (255, 255, 255, 2))
    image.putpixel((size[0] - 1, size[1] - 1), (255, 255, 255, imaging.ALPHA_THRESHOLD))
    return image


@pytest.fixture(scope="session")
def big_cutout() -> bytes:
    """A 25 MP (5000 x 5000) transparent PNG with a subject, made once per session."""
    image = Image.new("RGBA", (5000, 5000), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((1000, 500, 3999, 4499), fill=(30, 120, 200, 255))
    draw.rectangle((1500, 2000, 3500, 2600), fill=(250, 200, 0, 200))
    return png(image, compress_level=1)


# --- decoding ---------------------------------------------------------------------------------


def test_paletted_png_keeps_its_transparency() -> None:
    image = Image.new("P", (30, 20), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    ImageDraw.Draw(image).rectangle((10, 5, 19, 14), fill=1)
    data = png(image, transparency=0)
    rgba = imaging.decode_rgba(data)
    assert (rgba.bands, rgba.format) == (4, "uchar")
    assert vpx(rgba, (0, 0))[3] == 0
    assert vpx(rgba, (12, 8)) == (255, 0, 0, 255)
    cropped = opened(imaging.crop(data))
    assert cropped.size == (10 + 2 * imaging.MIN_MARGIN, 10 + 2 * imaging.MIN_MARGIN)


def test_16bit_grey_png_is_scaled_not_clipped() -> None:
    rgba = imaging.decode_rgba(png_16bit(4, 3, (40000,), color_type=0))
    assert (rgba.bands, rgba.format) == (4, "uchar")
    assert vpx(rgba, (0, 0)) == (156, 156, 156, 255)  # 40000 / 257 = 155.6, rounded


def test_16bit_rgba_png_keeps_alpha() -> None:
    data = png_16bit(6, 4, (65535, 0, 0, 32768), color_type=6)
    assert vpx(imaging.decode_rgba(data), (1, 1)) == (255, 0, 0, 128)
    flat = opened(imaging.flatten(data, WHITE))
    assert flat.size == (6, 4)
    red, green, blue = px(flat, (2, 2))
    assert red > 245
    assert 115 < green < 140
    assert 115 < blue < 140


def test_16bit_grey_alpha_png() -> None:
    data = png_16bit(5, 5, (65535, 0), color_type=4)
    with pytest.raises(imaging.NoSubject):
        imaging.crop(data)


def test_unreadable_and_truncated_bytes_are_refused() -> None:
    with pytest.raises(imaging.ImageUnreadable):
        imaging.decode_rgba(b"definitely not an image")
    whole = png(soft_subject())
    with pytest.raises(imaging.ImageUnreadable):
        imaging.decode_rgba(whole[: len(whole) // 2])


def test_over_25_megapixels_is_refused_before_decoding() -> None:
    data = png(Image.new("L", (5001, 5000)), compress_level=9)
    with pytest.raises(imaging.ImageTooLarge):
        imaging.decode_rgba(data)
    for function in (imaging.sticker, imaging.crop):
        with pytest.raises(imaging.ImageTooLarge):
            function(data)
    with pytest.raises(imaging.ImageTooLarge):
        imaging.flatten(data, WHITE)


def test_decompression_bomb_is_refused() -> None:
    bomb = png(Image.new("1", (20000, 20000)), compress_level=9)
    assert len(bomb) < 200_000
    with pytest.raises(imaging.ImageTooLarge):
        imaging.decode_rgba(bomb)


# --- crop -------------------------------------------------------------------------------------


def test_crop_is_the_alpha_box_plus_margin_with_edges_intact() -> None:
    source = soft_subject()
    cropped = opened(imaging.crop(png(source)))
    # Subject incl. its rim: (59, 29)-(140, 90) inclusive = 82 x 62; the margin is 3% of 82.
    margin = max(imaging.MIN_MARGIN, round(82 * imaging.CROP_MARGIN))
    assert cropped.size == (82 + 2 * margin, 62 + 2 * margin)
    assert cropped.mode == "RGBA"
    assert px(cropped, (margin, margin)) == (220, 20, 20, 128)  # the soft rim, unchanged
    assert px(cropped, (margin + 5, margin + 5)) == (220, 20, 20, 255)
    assert px(cropped, (0, 0))[3] == 0


def test_crop_margin_stops_at_the_frame() -> None:
    image = Image.new("RGBA", (50, 40), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((0, 0, 9, 39), fill=(0, 255, 0, 255))
    cropped = opened(imaging.crop(png(image)))
    assert cropped.size == (10 + imaging.MIN_MARGIN, 40)


def test_crop_of_an_opaque_image_is_the_whole_image() -> None:
    cropped = opened(imaging.crop(make_image("JPEG", size=(64, 48))))
    assert cropped.size == (64, 48)


def test_fully_transparent_has_no_subject() -> None:
    empty = png(Image.new("RGBA", (100, 80), (10, 10, 10, 0)))
    with pytest.raises(imaging.NoSubject):
        imaging.crop(empty)
    with pytest.raises(imaging.NoSubject):
        imaging.sticker(empty)
    flat = opened(imaging.flatten(empty, (0, 0, 0)))
    assert flat.size == (100, 80)
    assert max(px(flat.convert("RGBA"), (50, 40))[:3]) <= 2


def test_one_pixel_images() -> None:
    opaque = png(Image.new("RGBA", (1, 1), (9, 200, 9, 255)))
    assert opened(imaging.crop(opaque)).size == (1, 1)
    assert opened(imaging.flatten(opaque, WHITE)).size == (1, 1)
    sticker = opened(imaging.sticker(opaque))
    assert sticker.size == (512, 512)
    clear = png(Image.new("RGBA", (1, 1), (0, 0, 0, 0)))
    with pytest.raises(imaging.NoSubject):
        imaging.sticker(clear)
    with pytest.raises(imaging.NoSubject):
        imaging.crop(clear)


# --- sticker ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "expected"),
    [((10, 10, 409, 109), (512, 128)), ((10, 10, 109, 409), (128, 512)), ((5, 5, 54, 54), None)],
)
def test_sticker_is_trimmed_and_fitted_to_512(
    box: tuple[int, int, int, int], expected: tuple[int, int] | None
) -> None:
    image = Image.new("RGBA", (600, 500), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle(box, fill=(0, 0, 255, 255))
    data = imaging.sticker(png(image))
    sticker = opened(data)
    assert sticker.format == "WEBP"
    assert sticker.size == (expected or (512, 512))
    assert max(sticker.size) == 512
    assert len(data) <= imaging.STICKER_MAX_BYTES


def test_sticker_of_a_soft_subject_stays_transparent_around_it() -> None:
    sticker = opened(imaging.sticker(png(soft_subject())))
    assert sticker.mode == "RGBA"
    assert sticker.size == (512, round(62 * 512 / 82))
    assert px(sticker, (256, sticker.size[1] // 2))[3] == 255
    # The soft rim is still soft, and still red (resized with premultiplied alpha, not darkened).
    red, _green, _blue, alpha = px(sticker, (0, 0))
    assert 60 < alpha < 200
    assert red > 180


def test_noisy_sticker_falls_back_to_lossy_within_the_limit() -> None:
    noise = Image.frombytes("RGB", (512, 512), os.urandom(512 * 512 * 3))
    image = noise.convert("RGBA")
    image.putpixel((0, 0), (0, 0, 0, 0))
    lossless = io.BytesIO()
    image.save(lossless, format="WEBP", lossless=True)
    assert lossless.tell() > imaging.STICKER_MAX_BYTES
    data = imaging.sticker(png(image))
    assert len(data) <= imaging.STICKER_MAX_BYTES
    assert opened(data).size == (512, 512)


# --- flatten ----------------------------------------------------------------------------------


def test_flatten_blends_soft_edges_on_the_colour_and_keeps_the_size() -> None:
    data = imaging.flatten(png(soft_subject()), (0, 0, 0))
    flat = opened(data)
    assert flat.format == "JPEG"
    assert flat.mode == "RGB"
    assert flat.size == (200, 120)
    corner = px(flat, (20, 100))
    assert max(corner) <= 6
    rim = px(flat, (59, 60))  # alpha 128 of (220, 20, 20) on black
    assert 95 <= rim[0] <= 125
    middle = px(flat, (100, 60))
    assert middle[0] > 200
    assert middle[1] < 40


# --- 25 MP ------------------------------------------------------------------------------------


def test_25_megapixel_cutout(big_cutout: bytes) -> None:
    sticker = opened(imaging.sticker(big_cutout))
    assert sticker.size == (round(3000 * 512 / 4000), 512)
    cropped = opened(imaging.crop(big_cutout))
    margin = round(4000 * imaging.CROP_MARGIN)
    assert cropped.size == (3000 + 2 * margin, 4000 + 2 * margin)
    flat = opened(imaging.flatten(big_cutout, (240, 240, 240)))
    assert flat.size == (5000, 5000)


MEMORY_PROBE = textwrap.dedent(
    """
    import sys
    from bot.imaging import edits as imaging

    def peak():  # ru_maxrss survives exec (it would be pytest's); VmHWM does not
        status = open("/proc/self/status").read()
        return int(status.split("VmHWM:")[1].split()[0]) * 1024

    data = open(sys.argv[1], "rb").read()
    before = peak()
    getattr(imaging, sys.argv[2])(data, *([(255, 255, 255)] if sys.argv[2] == "flatten" else []))
    print(peak() - before)
    """
)


@pytest.mark.parametrize("function", ["flatten", "crop", "sticker"])
def test_a_25_megapixel_conversion_stays_within_two_rgba_copies(
    big_cutout: bytes, function: str, tmp_path: object
) -> None:
    path = f"{tmp_path}/big.png"
    with open(path, "wb") as file:
        file.write(big_cutout)
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, path, function],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    grown = int(probe.stdout.strip())
    limit = 4 * 25_000_000 * 2
    # Two RGBA copies, plus room for the interpreter's and the encoders' buffers.
    assert 20_000_000 < grown <= limit * 1.15, f"{function} grew by {grown / 1e6:.0f} MB"


# --- the helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [((1000, 10), (512, 5)), ((10, 1000), (5, 512)), ((1, 1), (512, 512)), ((5000, 1), (512, 1))],
)
def test_fit_size_makes_the_longer_side_512(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert imaging.fit_size(size) == expected


def test_with_margin_is_clamped_to_the_frame() -> None:
    assert imaging.with_margin((10, 10, 110, 60), (200, 200)) == (7, 7, 113, 63)
    assert imaging.with_margin((0, 0, 200, 200), (200, 200)) == (0, 0, 200, 200)
    assert imaging.with_margin((5, 5, 6, 6), (10, 10), ratio=0) == (3, 3, 8, 8)


def test_image_size_reads_the_header_only() -> None:
    assert imaging.image_size(png(Image.new("L", (5001, 5000)), compress_level=9)) == (5001, 5000)
    with pytest.raises(imaging.ImageUnreadable):
        imaging.image_size(b"nope")


def test_check_size_refuses_over_max_pixels_from_the_header() -> None:
    imaging.check_size(png(Image.new("L", (5000, 5000)), compress_level=9))
    with pytest.raises(imaging.ImageTooLarge):
        imaging.check_size(png(Image.new("L", (5001, 5000)), compress_level=9))
    with pytest.raises(imaging.ImageUnreadable):
        imaging.check_size(b"nope")


def test_encoders() -> None:
    image = imaging.decode_rgba(png(soft_subject()))
    assert opened(imaging.encode_png(image)).mode == "RGBA"
    assert opened(imaging.encode_jpeg(image.flatten())).format == "JPEG"
    assert opened(imaging.encode_webp(image)).format == "WEBP"
    noise = imaging.decode_rgba(png(Image.frombytes("RGB", (256, 256), os.urandom(256 * 256 * 3))))
    with pytest.raises(imaging.ImagingError):
        imaging.encode_webp(noise, 100)
