"""Front matter and header fields at the edges: bounded YAML, one-line errors, no controls."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import pytest

from mailer.articles import MAX_FRONT_MATTER_CHARS, load_article, load_articles
from mailer.errors import InputError
from mailer.models import Article

FIELDS = ("title", "date", "url", "author", "summary", "tags", "image", "slug")
TXT_FIELDS = ("title", "date", "url", "author", "summary", "tags", "image")
BASE = {"title": "Base title", "date": "2026-11-27", "url": "https://example.com/base"}
# What no field of a loaded article may hold: C0 and C1 controls, DEL, line and paragraph
# separators, bidirectional embeddings, overrides and isolates, a byte order mark.
FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")

# Values as written in YAML, each at the edge of some type.
YAML_EDGES = [
    "",
    "~",
    "null",
    "''",
    "'   '",
    "0",
    "-0",
    "1" * 5000,
    "-" + "9" * 5000,
    "0x" + "f" * 5000,
    "1" * 5000 + ".5",
    "1e999",
    "-1e999",
    "1e-999",
    ".inf",
    "-.inf",
    ".nan",
    "1_000",
    "0o17",
    "190:20:30",
    "true",
    "no",
    "=",
    "<<",
    "{}",
    "[]",
    "{a: b}",
    "{a: {b: {c: d}}}",
    "[a, b]",
    "[[a]]",
    "[~]",
    "[{a: b}]",
    "[a, " * 200 + "z" + "]" * 200,
    "x" * 5000,
    "'" + "é" * 5000 + "'",
    "🙂 emoji",
    "!!binary aGVsbG8=",
    "!!python/object:os.system ls",
    "!!python/name:os.system",
    "!!set {a}",
    "!!omap [a: 1]",
    "!local x",
    "!!str 2026",
    "!!int 12",
    "!!float 1e999",
    "!!timestamp 2026-11-27",
    "&anchor x",
    "*alias",
    '"\\0"',
    '"\\x1b[31mred"',
    '"\\u202eevil"',
    '"\\u2028"',
    '"\\x85"',
    '"\\x9b"',
    '"a\\nb"',
    '"a\\tb"',
    '"\\r"',
    '"\\U0001F600"',
    "|\n  line one\n  line two",
    ">\n  folded\n  text",
    "2026-02-30",
    "2026-11-26 25:61:00",
    "2026-13-01",
    "0000-01-01",
    "0001-01-01",
    "9999-12-31",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00-12:00",
    "9999-12-31T23:59:59-12:00",
    "9999-12-31T23:59:59+14:00",
    "2026-11-27T10:15:00+24:00",
    "2026-11-27T10:15:00+23:60",
    "2026-11-27T23:59:60Z",
    "2026-11-27T10:15:00.1234567891Z",
    "2026-11-27T10:15",
    "November 31, 2026",
    "https://example.com/x",
    "javascript:alert(1)",
    "https://example.com/" + "a" * 5000,
]

# Values as written after "Key: " in a .txt header line.
TXT_EDGES = [
    "",
    "x" * 5000,
    "9" * 5000,
    "1e999",
    "a, " * 100,
    "2026-02-30",
    "2026-11-26 25:61:00",
    "0001-01-01",
    "9999-12-31",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-12:00",
    "November 31, 2026",
    "a\x85b",
    "a\x9bb",
    "a\u2028b",
    "a\u202eb",
    "a\u2066b",
    "a\ufeffb",
    "a\x1bb",
    "a\x00b",
    "a\x7fb",
    "a\tb",
    "[a, b]",
    "{a: b}",
    "!!binary aGVsbG8=",
    "*alias",
    "javascript:alert(1)",
    "https://example.com/x",
]


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def markdown(fields: dict[str, str], body: str = "The story.") -> str:
    return "---\n" + "".join(f"{k}: {v}\n" for k, v in fields.items()) + f"---\n\n{body}\n"


def load_or_error(path: Path) -> Article | str:
    """The article, or the message of the one ``InputError``, checked to be one short line
    naming the file."""
    started = time.monotonic()
    try:
        article = load_article(path, zone=dt.UTC)
    except InputError as exc:
        message = str(exc)
        assert str(path) in message
        assert "\n" not in message and "\r" not in message
        assert len(message) < 300, message
        assert not FORBIDDEN.search(message), message
        return message
    finally:
        assert time.monotonic() - started < 5
    for text in (
        article.title,
        article.url or "",
        article.summary,
        article.slug,
        article.author or "",
    ):
        assert not FORBIDDEN.search(text), text
    for tag in article.tags:
        assert not FORBIDDEN.search(tag)
    assert article.published.tzinfo is not None
    return article


@pytest.mark.parametrize("value", YAML_EDGES, ids=lambda v: repr(v)[:24])
@pytest.mark.parametrize("key", FIELDS)
def test_every_front_matter_field_at_the_edges_loads_or_is_one_line(
    tmp_path: Path, key: str, value: str
) -> None:
    fields = {**BASE, key: value}
    load_or_error(write(tmp_path, "a.md", markdown(fields)))


@pytest.mark.parametrize("value", TXT_EDGES, ids=lambda v: repr(v)[:24])
@pytest.mark.parametrize("key", TXT_FIELDS)
def test_every_txt_header_field_at_the_edges_loads_or_is_one_line(
    tmp_path: Path, key: str, value: str
) -> None:
    fields = {**BASE, key: value}
    header = "".join(f"{k.capitalize()}: {v}\n" for k, v in fields.items())
    load_or_error(write(tmp_path, "a.txt", header + "\nThe story, told in one paragraph.\n"))


def alias_bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\ndate: *a{levels - 1}\n"


@pytest.mark.parametrize("levels", [4, 9])
def test_an_alias_bomb_is_refused_at_once_in_one_line(tmp_path: Path, levels: int) -> None:
    path = write(
        tmp_path,
        "bomb.md",
        "---\ntitle: Bomb\nurl: https://example.com/b\n" + alias_bomb(levels) + "---\n\nx\n",
    )
    started = time.monotonic()
    message = load_or_error(path)
    assert time.monotonic() - started < 1
    assert message == f"{path}:4: front matter: anchors and aliases (& and *) are not allowed"


def test_an_anchor_or_alias_anywhere_is_refused(tmp_path: Path) -> None:
    anchor = write(tmp_path, "anchor.md", markdown({**BASE, "extra": "&x 1"}))
    assert "anchors and aliases" in str(load_or_error(anchor))
    alias = write(tmp_path, "alias.md", markdown({**BASE, "author": "*nothing"}))
    assert "anchors and aliases" in str(load_or_error(alias))


def test_front_matter_size_and_depth_are_bounded(tmp_path: Path) -> None:
    big = write(tmp_path, "big.md", markdown({**BASE, "note": "x" * MAX_FRONT_MATTER_CHARS}))
    assert "front matter is longer than" in str(load_or_error(big))
    deep = write(tmp_path, "deep.md", markdown({**BASE, "extra": "[" * 5000 + "]" * 5000}))
    assert "levels deep" in str(load_or_error(deep))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2026-02-30", "day is out of range for month"),
        ("2026-11-26 25:61:00", "hour must be in 0..23"),
        ("2026-11-27T10:15:00+24:00", "the offset is out of range"),
    ],
)
def test_dates_that_do_not_exist_name_file_line_and_field(
    tmp_path: Path, value: str, reason: str
) -> None:
    path = write(
        tmp_path, "a.md", markdown({"title": "T", "url": "https://e.com/a", "date": value})
    )
    assert load_or_error(path) == (f"{path}:4: 'date' {value!r} is not a valid date ({reason})")


def test_a_5000_digit_number_is_text_not_an_integer(tmp_path: Path) -> None:
    digits = "1" * 5000
    for key in FIELDS:
        path = write(tmp_path, f"{key}.md", markdown({**BASE, key: digits}))
        result = load_or_error(path)
        if isinstance(result, str):
            assert f"'{key}'" in result
    tags = load_or_error(write(tmp_path, "t.md", markdown({**BASE, "tags": "[2026, 1e3, 0x1F]"})))
    assert isinstance(tags, Article) and tags.tags == ("2026", "1e3", "0x1F")


@pytest.mark.parametrize(
    "tagged",
    ["!!binary aGVsbG8=", "!!python/object/apply:os.system [ls]", "!!set {a}", "!local x"],
)
def test_tags_other_than_plain_yaml_are_refused(tmp_path: Path, tagged: str) -> None:
    path = write(tmp_path, "a.md", markdown({**BASE, "author": tagged}))
    message = load_or_error(path)
    assert isinstance(message, str) and f"{path}:5: front matter: the tag" in message


def test_values_are_kept_as_written(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.md",
        markdown({"title": "1e3", "author": "no", "url": "https://e.com/a", "date": "2026-11-27"}),
    )
    article = load_article(path)
    assert (article.title, article.author) == ("1e3", "no")


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "a.md", "---\ntitle: A\ntitle: B\nurl: https://e.com/a\n---\n\nx\n")
    assert load_or_error(path) == f"{path}:3: 'title' is given twice"


def test_structured_values_name_the_field(tmp_path: Path) -> None:
    title = write(tmp_path, "a.md", markdown({**BASE, "title": "[a, b]"}))
    assert load_or_error(title) == f"{title}:2: 'title' must be text, not a list"
    author = write(tmp_path, "b.md", markdown({**BASE, "author": "{a: {b: c}}"}))
    assert load_or_error(author) == f"{author}:5: 'author' must be text, not a mapping"
    tags = write(tmp_path, "c.md", markdown({**BASE, "tags": "[[a]]"}))
    assert load_or_error(tags) == f"{tags}:5: 'tags' must be a list of words"


# --- control characters ------------------------------------------------------------------

ESCAPES = {
    "\\0": 0x00,
    "\\x1b": 0x1B,
    "\\r": 0x0D,
    "\\x7f": 0x7F,
    "\\x85": 0x85,
    "\\x9b": 0x9B,
    "\\u2028": 0x2028,
    "\\u2029": 0x2029,
    "\\u202e": 0x202E,
    "\\u2066": 0x2066,
    "\\ufeff": 0xFEFF,
}


@pytest.mark.parametrize("escape", ESCAPES)
@pytest.mark.parametrize("key", ["title", "author", "summary", "url", "image", "slug", "tags"])
def test_control_characters_in_front_matter_name_file_line_and_field(
    tmp_path: Path, key: str, escape: str
) -> None:
    fields = {**BASE, key: f'"a{escape}b"'}
    path = write(tmp_path, "a.md", markdown(fields))
    line = 2 + list(fields).index(key)
    assert load_or_error(path) == (
        f"{path}:{line}: '{key}' contains the control character U+{ESCAPES[escape]:04X}; remove it"
    )


def test_a_newline_is_refused_but_in_the_summary(tmp_path: Path) -> None:
    title = write(tmp_path, "a.md", markdown({**BASE, "title": '"one\\ntwo"'}))
    assert load_or_error(title) == f"{title}:2: 'title' must be on one line"
    literal = write(tmp_path, "b.md", markdown({**BASE, "author": "|\n  one\n  two"}))
    assert load_or_error(literal) == f"{literal}:5: 'author' must be on one line"
    folded = load_article(write(tmp_path, "c.md", markdown({**BASE, "title": ">\n  one\n  two"})))
    assert folded.title == "one two"
    summary = load_article(write(tmp_path, "d.md", markdown({**BASE, "summary": '"one\\ntwo"'})))
    assert summary.summary == "one two"
    tab = load_article(write(tmp_path, "e.md", markdown({**BASE, "title": '"one\\ttwo"'})))
    assert tab.title == "one two"


@pytest.mark.parametrize("char", ["\u202e", "\u2066", "\ufeff"])
def test_invisible_controls_in_a_txt_header_name_the_line(tmp_path: Path, char: str) -> None:
    path = write(
        tmp_path,
        "a.txt",
        f"Title: Harbour\nAuthor: Jo{char} Bell\nURL: https://e.com/h\n\nThe story.\n",
    )
    assert load_or_error(path) == (
        f"{path}:2: 'author' contains the control character U+{ord(char):04X}; remove it"
    )


@pytest.mark.parametrize("char", ["\x1b", "\x85", "\x9b", "\u2028", "\u2029"])
def test_controls_written_into_a_file_name_the_line(tmp_path: Path, char: str) -> None:
    path = write(tmp_path, "a.txt", f"Title: Harbour\nAuthor: Jo{char}Bell\n\nThe story.\n")
    assert load_or_error(path) == (
        f"{path}:2: contains the control character U+{ord(char):04X}; is it a binary file?"
    )


def test_a_folder_with_a_bad_file_names_it(tmp_path: Path) -> None:
    write(tmp_path, "good.md", markdown(BASE))
    bad = write(tmp_path, "bad.md", markdown({**BASE, "date": "2026-02-30"}))
    with pytest.raises(InputError) as caught:
        load_articles(tmp_path)
    assert str(caught.value).startswith(f"{bad}:3: 'date'")
