"""Just enough of Telegram's parse_mode handling to reject what the real server rejects."""

from __future__ import annotations

import re
from html.parser import HTMLParser

HTML_TAGS = frozenset(
    [
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "tg-emoji",
        "code",
        "pre",
        "blockquote",
    ]
)
# Characters that are never markup in MarkdownV2 and must always be escaped outside code.
MDV2_ALWAYS_ESCAPED = ".!#+-={}"
_MDV2_CODE = re.compile(r"```.*?```|`[^`]*`", re.DOTALL)
_MDV2_LINK_TARGET = re.compile(r"\]\((?:\\.|[^)\\])*\)")
_MDV2_MARKUP = re.compile(r"\\(.)|\]\([^)]*\)|[*_~|`\[\]]")


class EntityError(ValueError):
    """Text that Telegram would answer with ``Bad Request: can't parse entities: ...``."""


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


class _TelegramHTML(HTMLParser):
    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.stack: list[str] = []
        self.parts: list[str] = []

    def _offset(self) -> int:
        line, column = self.getpos()
        lines = self.source.split("\n")
        index = sum(len(text) + 1 for text in lines[: line - 1]) + column
        return _byte_offset(self.source, index)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in HTML_TAGS:
            raise EntityError(f'Unsupported start tag "{tag}" at byte offset {self._offset()}')
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise EntityError(f'Unsupported start tag "{tag}/" at byte offset {self._offset()}')

    def handle_endtag(self, tag: str) -> None:
        if not self.stack:
            raise EntityError(f"Unexpected end tag at byte offset {self._offset()}")
        expected = self.stack.pop()
        if expected != tag:
            raise EntityError(
                f"Unmatched end tag at byte offset {self._offset()}, "
                f'expected "</{expected}>", found "</{tag}>"'
            )

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _plain_html(text: str) -> str:
    for match in re.finditer("<", text):
        if not re.match(r"</?[A-Za-z]", text[match.start() :]):
            tail = text[match.start() + 1 : match.start() + 2]
            raise EntityError(
                f'Unsupported start tag "{tail}" at byte offset '
                f"{_byte_offset(text, match.start())}"
            )
    parser = _TelegramHTML(text)
    parser.feed(text)
    parser.close()
    if parser.stack:
        raise EntityError(f'Can\'t find end tag corresponding to start tag "{parser.stack[-1]}"')
    return "".join(parser.parts)


def _plain_markdown_v2(text: str) -> str:
    scrubbed = _MDV2_LINK_TARGET.sub("]()", _MDV2_CODE.sub("", text))
    index = 0
    while index < len(scrubbed):
        char = scrubbed[index]
        if char == "\\":
            index += 2
            continue
        if char in MDV2_ALWAYS_ESCAPED:
            raise EntityError(
                f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
        index += 1
    return _MDV2_MARKUP.sub(lambda m: m.group(1) or "", text)


def plain_text(text: str, parse_mode: str | None) -> str:
    """The text as displayed; raises EntityError where Telegram refuses the markup."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        return _plain_html(text)
    if mode == "markdownv2":
        return _plain_markdown_v2(text)
    return text
