"""Article files → ``Article``: Markdown with YAML front matter, cluttered plain text, and
saved web pages."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path

from mailer.articles.fields import Meta, Parts, excerpt, one_line, parse_date_text
from mailer.articles.files import (
    ARTICLE_SUFFIXES,
    HTML_SUFFIXES,
    SkipHandler,
    article_files,
    is_inside,
    read_bytes,
    read_text,
)
from mailer.articles.html import (
    Page,
    clean_field,
    decode_html,
    html_to_markdown,
    load_html,
    read_page,
)
from mailer.articles.images import (
    IMAGE_TYPES,
    MAX_IMAGE_BYTES,
    image_type,
    is_media_path,
    local_image,
    read_image,
)
from mailer.articles.markdown import (
    MAX_FRONT_MATTER_CHARS,
    front_matter,
    load_markdown,
    markdown_article,
)
from mailer.articles.text import compile_clutter, load_txt
from mailer.errors import InputError
from mailer.headers import is_web_url, slugify
from mailer.models import Article

__all__ = [
    "ARTICLE_SUFFIXES",
    "IMAGE_TYPES",
    "MAX_FRONT_MATTER_CHARS",
    "MAX_IMAGE_BYTES",
    "SUMMARY_CHARS",
    "Page",
    "SkipHandler",
    "article_files",
    "clean_field",
    "compile_clutter",
    "cut_at_word",
    "decode_html",
    "html_to_markdown",
    "image_type",
    "is_inside",
    "is_media_path",
    "load_article",
    "load_articles",
    "local_image",
    "markdown_article",
    "parse_date_text",
    "read_image",
    "read_page",
    "recorded_sources",
]

SUMMARY_CHARS = 280
_SNIFF_BYTES = 4096


def recorded_sources(folder: Path) -> set[str]:
    """The ``source`` and ``url`` of every Markdown article in ``folder`` (what ``mailer
    import`` recognises as imported already, whatever the files are called now). A file
    that cannot be read is passed over: reading the folder for a digest reports it."""
    found: set[str] = set()
    for path in article_files(folder):
        if path.suffix.lower() not in (".md", ".markdown"):
            continue
        try:
            meta = front_matter(path, read_text(path)[0])
        except InputError:
            continue
        for key in ("source", "url"):
            value = meta.values.get(key)
            if isinstance(value, str) and value.strip():
                found.add(value.strip())
    return found


def load_articles(
    folder: Path,
    *,
    extra_clutter: Sequence[str] = (),
    base_url: str | None = None,
    zone: dt.tzinfo = dt.UTC,
    on_skip: SkipHandler | None = None,
) -> list[Article]:
    """Load every article file in ``folder`` (see ``article_files`` and ``load_article``).

    A broken file raises ``InputError`` naming it: a digest is never built from a folder
    where something is silently missing. Files never read are told to ``on_skip``.
    """
    if not folder.is_dir():
        raise InputError(f"{folder}: articles folder not found")
    clutter = compile_clutter(extra_clutter)
    return [
        load_article(path, clutter=clutter, base_url=base_url, zone=zone, folder=folder)
        for path in article_files(folder, on_skip=on_skip)
    ]


def load_article(
    path: Path,
    *,
    clutter: Sequence[re.Pattern[str]] | None = None,
    base_url: str | None = None,
    zone: dt.tzinfo = dt.UTC,
    folder: Path | None = None,
) -> Article:
    """Parse one ``.md``, ``.txt`` or ``.html`` file; any problem is one ``InputError``
    naming the file.

    With ``folder``, a path that leads outside it once symlinks are resolved is refused and
    never opened. ``zone`` is the newsletter's time zone: a date alone means that day there,
    a time without an offset is a time there, one with an offset is that instant.
    ``Article.published`` is the instant in UTC and ``Article.date`` its day in ``zone``; a
    file without a date is dated by its modification time. An ``image:`` that is not an
    http(s) URL is a path relative to the file, to an image inside ``folder`` (else the
    file's own folder); ``Article.image`` is then its path relative to that folder.
    """
    if folder is not None and not is_inside(path, folder):
        raise InputError(f"{path}: leads outside the articles folder {folder}; not read")
    suffix = path.suffix.lower()
    if suffix in HTML_SUFFIXES:
        raw, mtime = read_bytes(path)
        if b"\x00\x00" in raw[:_SNIFF_BYTES] and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise InputError(f"{path}: looks like a binary file, not a web page")
        meta, parts = load_html(path, decode_html(raw))
        return _build(meta, parts, base_url=base_url, zone=zone, mtime=mtime, folder=folder)
    text, mtime = read_text(path)
    if clutter is None:
        clutter = compile_clutter()
    if suffix == ".txt":
        meta, parts = load_txt(path, text, clutter)
    else:
        meta, parts = load_markdown(path, text)
    return _build(meta, parts, base_url=base_url, zone=zone, mtime=mtime, folder=folder)


def _build(
    meta: Meta,
    parts: Parts,
    *,
    base_url: str | None,
    zone: dt.tzinfo,
    mtime: float,
    folder: Path | None,
) -> Article:
    path = meta.path
    title = meta.text("title")
    if not title:
        raise InputError(f"{path}: no title (add 'title:' or a headline line above the story)")
    slug = meta.text("slug") or slugify(path.stem, "article")
    published, day, date_only = _when(meta, zone, mtime)
    url = meta.text("url")
    if not url and base_url:
        url = base_url.rstrip("/") + "/" + slug
    # No url is fine: the digest links to the article's archive page, or carries its text.
    if url:
        _check_url(meta, "url", url)
    image = meta.text("image")
    if image and not is_web_url(image):
        # A file kept beside the articles (the site serves it under /media/).
        try:
            image = local_image(
                image, base=path.parent, folder=folder if folder is not None else path.parent
            )
        except ValueError as exc:
            raise InputError(f"{meta.where('image')}: 'image' {exc}") from None
    image_alt = meta.text("image_alt") or meta.text("caption")
    summary = meta.text("summary") or cut_at_word(parts.first_para, SUMMARY_CHARS)
    return Article(
        slug=slug,
        title=title,
        date=day,
        url=url,
        summary=summary,
        body_html=parts.body_html,
        body_text=parts.body_text,
        source=path,
        published=published,
        author=meta.text("author"),
        tags=meta.tags(),
        image=image,
        image_alt=image_alt,
        date_from_mtime="date" not in meta.values,
        date_only=date_only,
    )


def _when(meta: Meta, zone: dt.tzinfo, mtime: float) -> tuple[dt.datetime, dt.date, bool]:
    """The article's instant (UTC), its day in ``zone``, and whether it was a date alone."""
    text = meta.text("date")
    if text is None:
        try:
            published = dt.datetime.fromtimestamp(mtime, dt.UTC)
            return published, published.astimezone(zone).date(), False
        except (OverflowError, OSError, ValueError):
            raise InputError(
                f"{meta.path}: no date, and the file's time is out of range (add 'date:')"
            ) from None
    where = f"{meta.where('date')}: 'date' {excerpt(text)}"
    try:
        when = parse_date_text(text)
        if when is None:
            raise InputError(
                f"{where} is not a date (use YYYY-MM-DD, or YYYY-MM-DDTHH:MM:SS+01:00 with a time)"
            )
        if isinstance(when, dt.datetime):
            published = (when if when.tzinfo else when.replace(tzinfo=zone)).astimezone(dt.UTC)
            return published, published.astimezone(zone).date(), False
        start = dt.datetime.combine(when, dt.time(), tzinfo=zone)
        return start.astimezone(dt.UTC), when, True
    except ValueError as exc:
        raise InputError(f"{where} is not a valid date ({one_line(str(exc))})") from None
    except OverflowError:
        raise InputError(f"{where} is out of range") from None


def _check_url(meta: Meta, key: str, url: str) -> None:
    if not is_web_url(url):
        raise InputError(f"{meta.where(key)}: '{key}' must be an http(s) URL, not {excerpt(url)}")


def cut_at_word(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters at a word boundary, adding an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-–—") + "…"
