"""Jinja2 (strict, autoescaped) and premailer, run once per issue with holes for personal data."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import secrets
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import jinja2
from premailer import Premailer

from mailer.errors import InputError, TemplateError
from mailer.headers import human_date, is_web_url, page_slug
from mailer.models import Article, Digest, Rendered, Spliced
from mailer.render.body import (
    FORWARD_BODY_BUDGET,
    TEXT_WIDTH,
    MailBody,
    demote_headings,
    mail_body,
    plain_text,
)

__all__ = [
    "BASE_FIELDS",
    "FORWARD_BODY_BUDGET",
    "HTML_BUDGET",
    "TEXT_WIDTH",
    "HasImage",
    "MailBody",
    "SiteLinks",
    "check_html_budget",
    "default_templates_dir",
    "demote_headings",
    "html_size",
    "inline_css",
    "links_of",
    "mail_body",
    "make_environment",
    "media_path",
    "personal_fields",
    "plain_text",
    "render_digest",
    "render_page",
    "render_template_pair",
]

_MARKER = "mAILER"
_ANY_HOLE_RE = re.compile("%%" + _MARKER + r"[0-9a-f]{10}_\d+%%")
_PERSONAL_ONLY_PRINTED = (
    "personal fields (subscriber.*) can only be printed, not used in conditions or "
    "filters; the name already falls back to MAILER_NAME_FALLBACK when empty"
)

# Filters and tests that print a personal field as it is, or only ask whether it exists.
_PRINTING_FILTERS = frozenset({"e", "escape", "forceescape", "safe", "string", "default", "d"})
_PRINTING_TESTS = frozenset({"defined", "undefined", "none", "string"})

# Fields every recipient has; extra CSV columns are added after these. ``forward_token``
# is empty without MAILER_PUBLIC_URL; templates append it to ``links.forward(article)``.
BASE_FIELDS = ("email", "name", "unsubscribe_url", "forward_token")

# Gmail clips an HTML part past about 102 KB, hiding the footer and its unsubscribe link:
# every message's HTML part stays under this many bytes (personal values included).
HTML_BUDGET = 100_000
# Room kept for each personal value spliced into the HTML (an address, a name, a token URL).
_SLOT_ALLOWANCE = 320


class HasImage(Protocol):
    """An article as templates show it, sent (``Article``) or archived."""

    @property
    def image(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class SiteLinks:
    """Addresses on the site ``mailer serve`` answers at (``MAILER_PUBLIC_URL``, https, no
    trailing slash), as templates use them: ``links.issue(digest.issue_date)``. Without a
    public URL every one is ``None``, and templates leave the link out."""

    public_url: str | None = None

    @property
    def archive(self) -> str | None:
        """The archive's index, ``/issues/`` (also the List-Archive header)."""
        return f"{self.public_url}/issues/" if self.public_url else None

    @property
    def feed(self) -> str | None:
        return f"{self.public_url}/feed.xml" if self.public_url else None

    def issue(self, day: dt.date) -> str | None:
        """One issue's page: "View in browser"."""
        return f"{self.public_url}/issues/{day.isoformat()}/" if self.public_url else None

    def article(self, article: Article) -> str | None:
        """An article's page in the archive, with its full text."""
        if not self.public_url:
            return None
        return f"{self.public_url}/articles/{page_slug(article.slug)}/"

    def read_more(self, article: Article) -> str | None:
        """The article's own ``url:``, else its archive page; ``None`` when there is neither
        (then a digest carries the full text)."""
        return article.url or self.article(article)

    def image(self, article: HasImage, *, root: str | None = None) -> str | None:
        """The ``src`` of an article's image. An http(s) ``image:`` is used as it is. A file
        in the articles folder (``images/market-hall.jpg``, as the articles layer gives it)
        is on the public site at ``<public>/media/<path>``; without a public URL it is the
        relative ``media/<path>`` that a preview folder holds beside its HTML (see
        ``pipeline.preview_media``), and a send refuses it: readers could not load it. A
        page of the site gives ``root``, its way back to the site's root (``../../``): the
        image is then ``<root>media/<path>``, relative like the page's other links."""
        if not article.image:
            return None
        if is_web_url(article.image):
            return article.image
        path = media_path(article.image)
        if root is not None:
            return root + path
        return f"{self.public_url}/{path}" if self.public_url else path

    def forward(self, article: Article) -> str | None:
        """The forward form for one article, up to ``token=``: the template appends
        ``subscriber.forward_token``, each recipient's own."""
        if not self.public_url:
            return None
        return f"{self.public_url}/forward/{page_slug(article.slug)}?token="


def media_path(image: str, *, quoted: bool = True) -> str:
    """Where a local image (a path inside the articles folder) is, relative to the site's
    root or a preview folder: ``media/<path>``, each part URL-quoted unless ``quoted`` is
    false (the file's own name)."""
    parts = [p for p in image.split("/") if p not in ("", ".", "..")]
    return "media/" + "/".join(quote(p) if quoted else p for p in parts)


def links_of(newsletter: object) -> SiteLinks:
    """The ``links`` a newsletter context carries (``pipeline.newsletter_context``), or none."""
    links = newsletter.get("links") if isinstance(newsletter, Mapping) else None
    return links if isinstance(links, SiteLinks) else SiteLinks()


def default_templates_dir() -> Path:
    """Templates inside the installed wheel, else the repository's ``templates/``."""
    package = Path(__file__).resolve().parent.parent  # mailer/
    shipped = package / "templates"
    return shipped if shipped.is_dir() else package.parent / "templates"


def make_environment(override_dir: Path | None = None) -> jinja2.Environment:
    """A user folder overrides the default templates file by file."""
    loaders: list[jinja2.BaseLoader] = []
    if override_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(override_dir)))
    loaders.append(jinja2.FileSystemLoader(str(default_templates_dir())))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html")),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["human_date"] = human_date
    env.filters["plain_text"] = plain_text
    env.globals["mail_body"] = mail_body
    # A filter or test given a personal field would run on its hole, not on the value, and
    # many (``replace``, ``wordwrap``, ``is upper``...) would silently do nothing.
    registries: list[tuple[dict[str, Any], frozenset[str]]] = [
        (env.filters, _PRINTING_FILTERS),
        (env.tests, _PRINTING_TESTS),
    ]
    for registry, printing in registries:
        for name, func in list(registry.items()):
            if name not in printing:
                registry[name] = _refuse_personal(func)
    return env


def _refuse_personal(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)  # keeps jinja's pass_context/pass_eval_context marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        for value in (*args, *kwargs.values()):
            if isinstance(value, str) and _ANY_HOLE_RE.search(value):
                raise TemplateError(_PERSONAL_ONLY_PRINTED)
        return func(*args, **kwargs)

    return guarded


class _Personal(str):
    """A hole for one recipient's value. It can be printed, never tested or transformed: the
    template is rendered once per issue, so ``{% if subscriber.name %}`` or
    ``subscriber.name | upper`` cannot be honoured per recipient, and must not pass silently."""

    __slots__ = ()
    __hash__ = str.__hash__

    def __bool__(self) -> bool:
        raise TemplateError(_PERSONAL_ONLY_PRINTED)


def _refuse(self: _Personal, *args: object, **kwargs: object) -> Any:
    raise TemplateError(_PERSONAL_ONLY_PRINTED)


# Every str method and the operators that filters and tests use (``upper``, ``length``,
# ``==``, slicing...) refuse; printing (``str()``, escaping, joining) still works.
for _name in (
    *(n for n in dir(str) if not n.startswith("_") and n != "maketrans"),
    "__len__",
    "__getitem__",
    "__iter__",
    "__contains__",
    "__mul__",
    "__rmul__",
    "__mod__",
    "__eq__",
    "__ne__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
):
    setattr(_Personal, _name, _refuse)


class _Holes:
    """The markers of one render. Random per render, so article text cannot forge a hole;
    mixed case, so a case filter applied around a hole is caught rather than ignored."""

    def __init__(self) -> None:
        marker = _MARKER + secrets.token_hex(5)
        self.template = "%%" + marker + "_{}%%"
        self.split_re = re.compile("%%" + marker + r"_(\d+)%%")
        self.any_re = re.compile(re.escape(marker), re.IGNORECASE)


class _PersonalFields:
    """``subscriber.<field>`` (or ``subscriber["a column"]``) in templates; an unknown field is
    a StrictUndefined error. Not a dict, so a column named ``items`` cannot hit a method."""

    __slots__ = ("_holes",)

    def __init__(self, holes: Mapping[str, _Personal]) -> None:
        self._holes = dict(holes)

    def __getattr__(self, name: str) -> _Personal:
        try:
            return self._holes[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> _Personal:
        return self._holes[name]


def personal_fields(extra: Sequence[str]) -> tuple[str, ...]:
    return (*BASE_FIELDS, *(f for f in extra if f not in BASE_FIELDS))


def render_template_pair(
    env: jinja2.Environment,
    stem: str,
    *,
    fields: Sequence[str],
    context: Mapping[str, Any],
    budget: bool = True,
) -> tuple[Spliced, Spliced]:
    """Render ``<stem>.html.j2`` (then inline CSS) and ``<stem>.txt.j2`` with holes.

    Templates get ``links`` (``SiteLinks``) from the newsletter context unless the context
    gives its own. An HTML part of ``HTML_BUDGET`` bytes or more is an ``InputError``
    (``budget=False``: the caller checks it, with its own hint)."""
    marks = _Holes()
    holes = _PersonalFields({f: _Personal(marks.template.format(i)) for i, f in enumerate(fields)})
    links = links_of(context.get("newsletter"))
    ctx = {"links": links, **context, "subscriber": holes, "recipient": holes}
    html = _render(env, f"{stem}.html.j2", ctx)
    html = inline_css(html, name=f"{stem}.html.j2")
    text = _render(env, f"{stem}.txt.j2", ctx)
    html_doc = _split(html, fields, f"{stem}.html.j2", marks)
    if budget:
        check_html_budget(html_doc, what=f"template {stem}.html.j2")
    return html_doc, _split(text, fields, f"{stem}.txt.j2", marks)


def html_size(doc: Spliced) -> int:
    """The bytes of a rendered HTML part, counting each personal value at a generous size."""
    return sum(len(lit.encode("utf-8")) for lit in doc.literals) + _SLOT_ALLOWANCE * len(doc.slots)


def check_html_budget(doc: Spliced, *, what: str, hint: str | None = None) -> None:
    """``InputError`` when the HTML part is ``HTML_BUDGET`` bytes or more: Gmail would clip
    it, and hide the footer with its unsubscribe link."""
    size = html_size(doc)
    if size >= HTML_BUDGET:
        raise InputError(
            f"{what}: the HTML part would be {size // 1000} KB, over the "
            f"{HTML_BUDGET // 1000} KB budget (Gmail clips longer messages and hides "
            "the unsubscribe link)",
            hint=hint,
        )


def render_digest(
    digest: Digest,
    *,
    env: jinja2.Environment,
    newsletter: Mapping[str, Any],
    extra_fields: Sequence[str] = (),
) -> Rendered:
    """Render the digest once for every recipient of this issue."""
    fields = personal_fields(extra_fields)
    context = {"digest": digest, "articles": digest.articles, "newsletter": newsletter}
    html, text = render_template_pair(env, "digest", fields=fields, context=context, budget=False)
    count = len(digest.articles)
    # Roughly how many articles fit: the same share of them as of the bytes.
    fits = max(1, min(count - 1, count * HTML_BUDGET * 9 // (10 * max(1, html_size(html)))))
    check_html_budget(
        html,
        what=f"the digest of {count} article{'' if count == 1 else 's'}",
        hint=f"cut it with --max-articles (about --max-articles {fits} fits)",
    )
    return Rendered(subject=digest.subject, html=html, text=text)


def render_page(env: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
    """One template with no personal fields (a web page): a ``TemplateError`` names the
    template and line."""
    return _render(env, name, context)


def _render(env: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
    try:
        template = env.get_template(name)
        return template.render(context)
    except jinja2.TemplateSyntaxError as exc:
        where = f"{exc.filename or exc.name or name}:{exc.lineno}"
        raise TemplateError(f"template {where}: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template {exc.name} not found") from None
    except (jinja2.TemplateError, TemplateError, TypeError, ValueError, AttributeError) as exc:
        message = exc.message if isinstance(exc, TemplateError) else str(exc)
        raise TemplateError(f"template {_template_line(exc, name)}: {message}") from None


def _template_line(exc: BaseException, fallback: str) -> str:
    """Find the innermost template frame of an error raised while rendering."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2") or frame.filename.endswith(".css"):
            return f"{frame.filename}:{frame.lineno}"
    return fallback


def inline_css(html: str, *, name: str = "template") -> str:
    """Move CSS into ``style=`` attributes; media queries stay in a ``<style>`` block.

    ``allow_network=False`` makes premailer ignore ``<link>`` stylesheets, so inlining never
    fetches anything.
    """
    try:
        inliner = Premailer(
            html,
            base_url=None,
            allow_network=False,
            allow_loading_external_files=False,
            disable_validation=True,
            strip_important=False,
            keep_style_tags=False,
            # Keep authored width attributes (width="600" matters to Outlook); the CSS
            # max-width does the fluid part.
            disable_basic_attributes=["width", "height"],
            cssutils_logging_level=logging.CRITICAL,
        )
        result: str = inliner.transform(pretty_print=True)
    except Exception as exc:  # premailer raises many types on bad CSS/HTML
        raise TemplateError(f"template {name}: CSS inlining failed: {exc}") from None
    if not result.lstrip().lower().startswith("<!doctype"):
        result = "<!DOCTYPE html>\n" + result
    return result


def _split(document: str, fields: Sequence[str], name: str, marks: _Holes) -> Spliced:
    parts = marks.split_re.split(document)
    literals = tuple(parts[0::2])
    slots = tuple(fields[int(i)] for i in parts[1::2])
    if any(marks.any_re.search(lit) for lit in literals):
        raise TemplateError(
            f"template {name}: a personal field was changed by a filter; print it as it is"
        )
    return Spliced(literals=literals, slots=slots)
