"""The fake Telegram's multipart parser: what httpx sends, and what Telegram would refuse."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.forms import FormError, parse_multipart

TYPE = "multipart/form-data; boundary=XyZ"


def test_fields_and_files_as_httpx_sends_them() -> None:
    png = b"\x89PNG\r\n\r\n--Xy" * 1000  # blank lines and half a boundary inside the data
    request = httpx.Request(
        "POST",
        "http://127.0.0.1/",
        data={"chat_id": "7", "caption": "a\r\nb"},
        files={"document": ("c.png", png, "image/png")},
        headers={"Content-Type": TYPE},
    )
    fields, files = parse_multipart(TYPE, b"".join(request.stream))  # type: ignore[arg-type]
    assert fields == {"chat_id": "7", "caption": "a\r\nb"}
    assert files["document"].data == png
    assert files["document"].filename == "c.png"
    assert files["document"].content_type == "image/png"


def test_a_preamble_and_an_epilogue_are_ignored() -> None:
    body = (
        b"preamble\r\n--XyZ\r\n"
        b'Content-Disposition: form-data; name="a"\r\n\r\n1\r\n'
        b"--XyZ--\r\nepilogue"
    )
    assert parse_multipart(TYPE, body) == ({"a": "1"}, {})


@pytest.mark.parametrize(
    "body",
    [
        b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n',  # no closing --
        b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--XyZ\r\n',
        b"no boundary at all",
        b"--XyZ\r\nno header block\r\n--XyZ--\r\n",
    ],
)
def test_a_broken_body_is_refused(body: bytes) -> None:
    with pytest.raises(FormError):
        parse_multipart(TYPE, body)
