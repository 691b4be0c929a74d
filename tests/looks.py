"""Messages to look at: real previews of the sample (a digest, forwards, a long article), the
articles that make them, and small images, for the accessibility, budget, SpamAssassin and
forward-looks tests."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from tests.cli import invoke

DATE = "2026-11-27"
SITE = "https://news.example.org"
RIVER = "2026-11-27-river-path-reopens"
LONG = "2026-11-26-long-report"
LONG_URL = "https://example.com/news/long-report"
SENDER = "Alice Example <alice@example.org>"
FRIEND = "friend@example.net"
NOTE = "Thought of you when I read this - see you at the bench on Saturday?"

# Sentences a local newspaper might print: a long article made of them reads like one, so
# that SpamAssassin judges our markup, not nonsense text.
SENTENCES = (
    "The council met on Tuesday evening to discuss the plans for the new library.",
    "Residents asked about opening hours, parking and the cost of heating the old building.",
    "The head librarian said the service would keep its mobile van for outlying villages.",
    "A decision on the final design is expected before the end of January.",
    "Volunteers from the friends group have offered to run a reading club on Saturdays.",
    "Two councillors voted against, saying the money should go to road repairs instead.",
    "The building has stood empty since the bank moved to the retail park in 2019.",
    "Work could start in the spring if the heritage survey finds nothing unexpected.",
)


@dataclass(frozen=True)
class Preview:
    """One preview folder: its ``.eml`` files and its HTML and text documents."""

    folder: Path
    kind: str  # "digest" or "forward"

    @property
    def html(self) -> Path:
        return self.folder / f"{self.kind}.html"

    @property
    def text(self) -> Path:
        return self.folder / f"{self.kind}.txt"

    @property
    def emls(self) -> list[Path]:
        return sorted(self.folder.glob("*.eml"))


def paragraph(index: int, sentences: int = 6) -> str:
    return " ".join(SENTENCES[(index + i) % len(SENTENCES)] for i in range(sentences))


def write_long_article(
    folder: Path, *, size: int = 200_000, url: str | None = LONG_URL, slug: str = LONG
) -> Path:
    """A Markdown article of about ``size`` characters with what a long story holds:
    sections, lists, a quote, code, and a 1600 px wide image (``wide.png``, http)."""
    lines = [
        "---",
        "title: The year in the town hall, month by month",
        "date: 2026-11-26",
        *([f"url: {url}"] if url else []),
        "author: Ana Lima",
        "---",
        "",
        f"Opening paragraph. {paragraph(0)}",
        "",
        "![The river at dawn, seen from Mill Bridge](https://images.example.com/wide.png)",
        "",
    ]
    index = 0
    while sum(len(line) + 1 for line in lines) < size:
        index += 1
        if index % 6 == 0:
            lines += [f"## Month {index // 6}", ""]
        if index % 9 == 0:
            lines += ["- " + SENTENCES[index % 8], "- " + SENTENCES[(index + 3) % 8], ""]
        if index % 13 == 0:
            lines += ["> " + paragraph(index, 3), ""]
        if index % 17 == 0:
            lines += [
                "```",
                "budget_2027 = carried_forward + council_tax - road_repairs",
                "```",
                "",
            ]
        lines += [f"{paragraph(index)} See [the minutes](https://example.com/minutes/{index}).", ""]
    lines += ["Closing paragraph: the last words of the whole article.", ""]
    path = folder / f"{slug}.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def digest_preview(sample: Path, *args: str, env: dict[str, str] | None = None) -> Preview:
    result = invoke("digest", "--date", DATE, *args, env=env)
    assert result.exit_code == 0, result.output
    return Preview(sample / "previews" / f"digest-{DATE}", "digest")


def forward_preview(
    sample: Path, slug: str, *args: str, env: dict[str, str] | None = None
) -> Preview:
    result = invoke("forward", slug, "--to", FRIEND, "--sender", SENDER, *args, env=env)
    assert result.exit_code == 0, result.output
    return Preview(sample / "previews" / f"forward-{slug}", "forward")


def png(width: int, height: int, rgb: tuple[int, int, int] = (180, 85, 58)) -> bytes:
    """A plain PNG image of one colour (for a browser to lay out at its real size)."""
    row = b"\x00" + bytes(rgb) * width
    raw = zlib.compress(row * height, 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
