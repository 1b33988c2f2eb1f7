"""Parse url-encoded and multipart/form-data bodies (python-multipart is not installed)."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from urllib.parse import parse_qsl

URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


class FormError(ValueError):
    """The body does not match its declared content type."""


@dataclass(frozen=True)
class UploadedFile:
    """One file part of a multipart request."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def media_type(content_type: str | None) -> str:
    """The lower-cased media type without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _header_params(value: str) -> Message:
    message = Message()
    message["content-type"] = value
    return message


def parse_urlencoded(body: bytes) -> dict[str, str]:
    """Decode an application/x-www-form-urlencoded body (last value wins)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormError("body is not UTF-8") from exc
    return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=False))


def parse_multipart(
    content_type: str, body: bytes
) -> tuple[dict[str, str], dict[str, UploadedFile]]:
    """Split a multipart/form-data body into plain fields and file parts."""
    boundary = _header_params(content_type).get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise FormError("multipart body without boundary")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    chunks = (b"\r\n" + body).split(delimiter)
    if len(chunks) < 2 or not chunks[-1].startswith(b"--"):
        raise FormError("multipart body is not terminated")
    fields: dict[str, str] = {}
    files: dict[str, UploadedFile] = {}
    for chunk in chunks[1:-1]:
        head, sep, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise FormError("multipart part without header block")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        params = Message()
        params["content-disposition"] = disposition
        name = params.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise FormError("multipart part without a name")
        filename = params.get_filename()
        if filename is None and "content-type" not in headers:
            fields[name] = data.decode("utf-8")
        else:
            files[name] = UploadedFile(name, filename, headers.get("content-type"), data)
    return fields, files


def parse_form(
    content_type: str | None, body: bytes
) -> tuple[dict[str, str], dict[str, UploadedFile]]:
    """Parse a url-encoded or multipart body; an empty body gives no fields."""
    kind = media_type(content_type)
    if kind == MULTIPART:
        return parse_multipart(content_type or "", body)
    if kind == URLENCODED or not body:
        return parse_urlencoded(body), {}
    raise FormError(f"unsupported content type {content_type!r}")
