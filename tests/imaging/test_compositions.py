"""Studio round two, pixel by pixel: shop photo, own background, drop shadow, outlined sticker."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import pytest
from PIL import Image, ImageDraw

from bot.imaging import edits as imaging
from tests.support import ROOT, opened, png, px

WHITE = (255, 255, 255)
RED = (220, 20, 20)
GREEN = (40, 160, 60)


def jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **options)
    return buffer.getvalue()


def close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 6) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def cutout(
    size: tuple[int, int], box: tuple[int, int, int, int], hole: bool = False
) -> Image.Image:
    """A red rectangle on transparent *black* (so dropping alpha would show black, not white)."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rectangle(box, fill=(*RED, 255))
    left, top, right, bottom = box
    # A one-pixel half-transparent rim and matting haze in a corner, as real cutouts have.
    draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), outline=(*RED, 128))
    image.putpixel((0, 0), (255, 255, 255, 3))
    if hole:
        width, height = right - left, bottom - top
        draw.rectangle(
            (left + width // 3, top + height // 3, right - width // 3, bottom - height // 3),
            fill=(0, 0, 0, 0),
        )
    return image


def box_where(image: Image.Image, predicate_lut: list[int]) -> tuple[int, int, int, int]:
    """The bounding box of the pixels whose green channel maps to non-zero in `predicate_lut`."""
    box = image.getchannel("G").point(predicate_lut).getbbox()
    assert box is not None
    return box


# Pixels that are clearly not white: green channel well under 255 (the subject is red).
NOT_WHITE = [255 if value < 200 else 0 for value in range(256)]
# On the green photo (green channel 160), the red subject is where green is low.
NOT_WHITE_OR_GREEN = [255 if value < 90 else 0 for value in range(256)]


# --- shop photo -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "box"),
    [
        ((1000, 700), (100, 400, 499, 599)),  # wide, small: scaled up 4.25x
        ((700, 1000), (500, 60, 599, 459)),  # tall, at the edge: scaled up
        ((2600, 1400), (100, 100, 2499, 1299)),  # wide, large: scaled down
    ],
)
def test_shop_photo_is_a_white_2000_square_with_the_subject_at_85_percent_centred(
    size: tuple[int, int], box: tuple[int, int, int, int]
) -> None:
    data = imaging.shop_photo(png(cutout(size, box)))
    photo = opened(data)
    assert photo.format == "JPEG"
    assert photo.mode == "RGB"
    assert photo.size == (2000, 2000)
    left, top, right, bottom = box_where(photo, NOT_WHITE)
    # The subject incl. its one-pixel rim, scaled so its longer side is 85% of 2000 = 1700.
    width, height = box[2] - box[0] + 3, box[3] - box[1] + 3
    assert max(right - left, bottom - top) == pytest.approx(1700, abs=4)
    assert min(right - left, bottom - top) == pytest.approx(
        1700 * min(width, height) / max(width, height), abs=4
    )
    assert abs(left - (2000 - right)) <= 2
    assert abs(top - (2000 - bottom)) <= 2
    # Exactly 255 everywhere the cutout was transparent, a little away from the subject's edge
    # (the corner haze at alpha 3 does not count as subject and does not show).
    for region in (
        (0, 0, 2000, max(0, top - 8)),
        (0, min(2000, bottom + 8), 2000, 2000),
        (0, 0, max(0, left - 8), 2000),
        (min(2000, right + 8), 0, 2000, 2000),
    ):
        if region[0] < region[2] and region[1] < region[3]:
            assert photo.crop(region).getextrema() == ((255, 255),) * 3, region
    assert close(px(photo, ((left + right) // 2, (top + bottom) // 2)), RED)


def test_shop_photo_blends_semi_transparent_pixels_onto_white() -> None:
    image = Image.new("RGBA", (400, 400), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((100, 100, 299, 299), fill=(0, 0, 0, 128))
    photo = opened(imaging.shop_photo(png(image)))
    # Black at alpha 128 over white is mid grey: neither the black nor the alpha is dropped.
    assert close(px(photo, (1000, 1000)), (127, 127, 127), tolerance=3)
    assert px(photo, (5, 5)) == WHITE


def test_shop_photo_of_nothing_is_refused() -> None:
    with pytest.raises(imaging.NoSubject):
        imaging.shop_photo(png(Image.new("RGBA", (50, 50), (0, 0, 0, 0))))


# --- the user's own background ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((50, 50, 347, 147), (810, 270)),  # wide: 90% of the photo's width (900) decides
        ((50, 50, 147, 347), (180, 540)),  # tall: 90% of its height (600) decides
    ],
)
def test_subject_on_own_background_is_bottom_centred_within_90_percent(
    box: tuple[int, int, int, int], expected: tuple[int, int]
) -> None:
    background = jpeg(Image.new("RGB", (900, 600), GREEN))
    result = opened(imaging.with_background(png(cutout((500, 400), box, hole=True)), background))
    assert result.format == "JPEG"
    assert result.size == (900, 600)
    left, top, right, bottom = box_where(result, NOT_WHITE_OR_GREEN)
    assert right - left <= 810
    assert bottom - top <= 540
    # The subject incl. its rim fills the 90% box on its limiting side.
    assert right - left == pytest.approx(expected[0], abs=4)
    assert bottom - top == pytest.approx(expected[1], abs=4)
    assert bottom == 600
    assert abs(left - (900 - right)) <= 2
    # The photo shows where the cutout is transparent: around the subject and in its hole.
    for xy in ((5, 5), (895, 5), (5, 595), (450, max(0, top - 10)), (450, (top + bottom) // 2)):
        assert close(px(result, xy), GREEN), xy
    assert close(px(result, (left + (right - left) // 6, bottom - (bottom - top) // 6)), RED)


def test_own_background_follows_the_photos_exif_orientation() -> None:
    photo = Image.new("RGB", (900, 600), GREEN)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees: portrait
    background = jpeg(photo, exif=exif.tobytes())
    subject = png(cutout((300, 300), (10, 10, 109, 109)))
    result = opened(imaging.with_background(subject, background))
    assert result.size == (600, 900)
    left, _top, right, bottom = box_where(result, NOT_WHITE_OR_GREEN)
    assert right - left == pytest.approx(540, abs=4)
    assert bottom == 900


def test_own_background_refuses_what_the_other_actions_refuse() -> None:
    subject = png(cutout((100, 100), (10, 10, 49, 49)))
    with pytest.raises(imaging.ImageUnreadable):
        imaging.with_background(subject, b"not a photo")
    huge = io.BytesIO()
    Image.new("L", (5001, 5000)).save(huge, format="PNG", compress_level=9)
    with pytest.raises(imaging.ImageTooLarge):
        imaging.with_background(subject, huge.getvalue())
    with pytest.raises(imaging.NoSubject):
        imaging.with_background(
            png(Image.new("RGBA", (50, 50), (0, 0, 0, 0))), jpeg(Image.new("RGB", (10, 10)))
        )


def test_own_background_keeps_none_of_the_photos_metadata_and_lays_its_alpha_on_white() -> None:
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # camera make; GPS tags would travel the same way
    photo = jpeg(Image.new("RGB", (300, 200), GREEN), exif=exif.tobytes())
    subject = png(cutout((100, 100), (10, 10, 49, 49)))
    result = imaging.with_background(subject, photo)
    assert b"SecretCam" not in result
    assert not opened(result).getexif()
    see_through = png(Image.new("RGBA", (300, 200), (0, 0, 255, 0)))
    assert px(opened(imaging.with_background(subject, see_through)), (2, 2)) == WHITE


def test_a_format_libvips_cannot_read_is_decoded_by_pillow() -> None:
    image = Image.new("RGB", (60, 40), (0, 0, 0))
    ImageDraw.Draw(image).rectangle((10, 10, 29, 19), fill=RED)
    bmp = io.BytesIO()
    image.save(bmp, format="BMP")
    flat = opened(imaging.flatten(bmp.getvalue(), WHITE))
    assert flat.size == (60, 40)
    assert close(px(flat, (20, 15)), RED)
    assert opened(imaging.crop(bmp.getvalue())).size == (60, 40)


# --- shadow -----------------------------------------------------------------------------------


def test_shadow_is_dark_and_partly_opaque_below_and_beside_the_subject() -> None:
    image = Image.new("RGBA", (600, 600), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((100, 100, 499, 499), fill=(30, 60, 220, 255))
    result = opened(imaging.shadow(png(image)))
    assert result.format == "PNG"
    assert result.mode == "RGBA"
    solid = result.getchannel("A").point([0] * 255 + [255]).getbbox()
    assert solid is not None
    left, top, right, bottom = solid
    assert (right - left, bottom - top) == (400, 400)  # the subject itself, full size
    assert px(result, ((left + right) // 2, (top + bottom) // 2)) == (30, 60, 220, 255)
    below = px(result, ((left + right) // 2, bottom + 3))
    beside = px(result, (right + 2, (top + bottom) // 2))
    for pixel in (below, beside):
        assert 10 <= pixel[3] <= 200, pixel  # partly opaque
        assert max(pixel[:3]) <= 40, pixel  # and dark
    assert below[3] > beside[3]  # offset down: more shadow below than beside
    # Far from the subject, and above it (the shadow falls down), nothing.
    width, height = result.size
    for xy in ((0, 0), (width - 1, 0), ((left + right) // 2, 0), (0, height - 1)):
        assert px(result, xy)[3] == 0, xy


def test_shadow_of_nothing_is_refused() -> None:
    with pytest.raises(imaging.NoSubject):
        imaging.shadow(png(Image.new("RGBA", (50, 50), (0, 0, 0, 0))))


# --- outlined sticker -------------------------------------------------------------------------


def test_outline_sticker_has_an_opaque_white_ring_and_is_transparent_further_out() -> None:
    image = Image.new("RGBA", (1100, 500), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((50, 50, 449, 449), fill=(*RED, 255))
    draw.ellipse((650, 50, 1049, 449), fill=(*RED, 255))
    data = imaging.outline_sticker(png(image))
    sticker = opened(data)
    assert sticker.format == "WEBP"
    assert sticker.mode == "RGBA"
    assert max(sticker.size) == 512
    assert len(data) <= imaging.STICKER_MAX_BYTES
    middle = sticker.size[1] // 2
    row = [px(sticker, (x, middle)) for x in range(sticker.size[0])]
    red = [x for x, pixel in enumerate(row) if pixel[3] == 255 and close(pixel[:3], RED)]
    first_right_edge = max(x for x in red if x < sticker.size[0] // 2)
    width = imaging.OUTLINE_WIDTH
    # Just outside the subject: opaque white, all the way round (left, right, top).
    for x in range(first_right_edge + 3, first_right_edge + width - 1):
        assert row[x][3] == 255, x
        assert min(row[x][:3]) >= 250, x
    assert row[min(red) - width // 2][3] == 255
    column = [px(sticker, (min(red) + 100, y)) for y in range(sticker.size[1])]
    top = min(y for y, pixel in enumerate(column) if close(pixel[:3], RED) and pixel[3] == 255)
    assert top >= width // 2
    assert column[top - width // 2] == (*WHITE, 255)
    # Further out: transparent (between the two discs, and in the corners).
    for x in range(first_right_edge + width + 5, sticker.size[0] // 2 + 10):
        assert row[x][3] == 0, x
    assert px(sticker, (0, 0))[3] == 0
    assert px(sticker, (sticker.size[0] - 1, sticker.size[1] - 1))[3] == 0


def test_outline_sticker_of_nothing_is_refused() -> None:
    with pytest.raises(imaging.NoSubject):
        imaging.outline_sticker(png(Image.new("RGBA", (50, 50), (0, 0, 0, 0))))


# --- memory on 25 MP --------------------------------------------------------------------------


MEMORY_PROBE = textwrap.dedent(
    """
    import sys
    from bot.imaging import edits as imaging

    def peak():  # ru_maxrss survives exec (it would be pytest's); VmHWM does not
        status = open("/proc/self/status").read()
        return int(status.split("VmHWM:")[1].split()[0]) * 1024

    data = open(sys.argv[1], "rb").read()
    extra = [open(path, "rb").read() for path in sys.argv[3:]]
    before = peak()
    getattr(imaging, sys.argv[2])(data, *extra)
    print(peak() - before)
    """
)


@pytest.fixture(scope="module")
def big_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A 25 MP (5000 x 5000) cutout and a 25 MP photo, as files."""
    folder = tmp_path_factory.mktemp("big")
    image = Image.new("RGBA", (5000, 5000), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((1000, 500, 3999, 4499), fill=(30, 120, 200, 255))
    draw.rectangle((1500, 2000, 3500, 2600), fill=(250, 200, 0, 200))
    image.save(folder / "cutout.png", compress_level=1)
    Image.linear_gradient("L").resize((5000, 5000)).convert("RGB").save(folder / "photo.jpg")
    return str(folder / "cutout.png"), str(folder / "photo.jpg")


@pytest.mark.parametrize(
    "function", ["shop_photo", "with_background", "shadow", "outline_sticker"]
)
def test_a_25_megapixel_action_stays_within_two_rgba_copies(
    big_files: tuple[str, str], function: str
) -> None:
    cutout_path, photo_path = big_files
    extra = [photo_path] if function == "with_background" else []
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, cutout_path, function, *extra],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    grown = int(probe.stdout.strip())
    # The budget is 400 MB per worker; two RGBA copies of 25 MP are 200 MB.
    assert 20_000_000 < grown <= 4 * 25_000_000 * 2 * 1.15, f"{function}: {grown / 1e6:.0f} MB"
