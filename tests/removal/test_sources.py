"""Image sources: link parsing and result file names."""

from __future__ import annotations

import pytest

from bot.removal.sources import (
    ImageSource,
    MalformedLink,
    NotHttpLink,
    SourceKind,
    find_scheme_link,
    image_type_from_name,
    normalise_link,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://example.com/cat.png", "https://example.com/cat.png"),
        ("HTTP://example.com/a.jpg#frag", "http://example.com/a.jpg"),
        ("example.com/cat.jpg", "http://example.com/cat.jpg"),
        ("https://example.com/x.jpg?w=1&h=2", "https://example.com/x.jpg?w=1&h=2"),
    ],
)
def test_normalise_link(raw: str, expected: str) -> None:
    assert normalise_link(raw) == expected


@pytest.mark.parametrize(
    "raw", ["ftp://example.com/cat.png", "file:///etc/passwd", "mailto:a@b.c", "https://"]
)
def test_non_http_links_are_refused(raw: str) -> None:
    with pytest.raises(NotHttpLink):
        normalise_link(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "http://[::1/cat.jpg",
        "http://[not-an-ip]/x.png",
        "http://example\uff0ecom\uff0fcat.jpg",
        "example\uff0ecom\uff0fcat.jpg",
        "https://example.com:99999/cat.jpg",
        "https://example.com:port/cat.jpg",
    ],
)
def test_links_urlsplit_cannot_parse_are_refused_as_malformed(raw: str) -> None:
    with pytest.raises(MalformedLink):
        normalise_link(raw)


def test_find_scheme_link() -> None:
    assert find_scheme_link("look: ftp://host/file.png now") == "ftp://host/file.png"
    assert find_scheme_link("no links here") is None


@pytest.mark.parametrize(
    ("source", "name"),
    [
        (
            ImageSource.telegram_file(SourceKind.DOCUMENT, "f", "u1", file_name="My Cat.JPG"),
            "My Cat-nobg.png",
        ),
        (ImageSource.telegram_file(SourceKind.PHOTO, "f", "AQADuniq"), "cutout-AQADuniq.png"),
        (ImageSource.link("https://example.com/img/dog.webp?x=1"), "dog-nobg.png"),
        (ImageSource.link("https://example.com/"), None),
        (
            ImageSource.telegram_file(SourceKind.DOCUMENT, "f", "u2", file_name="../../etc.png"),
            "etc-nobg.png",
        ),
    ],
)
def test_result_file_name(source: ImageSource, name: str | None) -> None:
    result = source.result_file_name()
    if name is None:
        assert result.startswith("cutout-")
        assert result.endswith(".png")
    else:
        assert result == name


def test_keys() -> None:
    assert ImageSource.telegram_file(SourceKind.PHOTO, "a", "uniq").key == "tg:uniq"
    assert ImageSource.link("https://x.test/a.png").key == "url:https://x.test/a.png"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cat.JPG", "image/jpeg"),
        ("scan.tif", "image/tiff"),
        ("IMG_0001.HEIC", "image/heic"),
        ("notes.txt", None),
        ("png", None),
        ("", None),
    ],
)
def test_image_type_from_name(name: str, expected: str | None) -> None:
    assert image_type_from_name(name) == expected
