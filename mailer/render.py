"""Jinja2 (strict, autoescaped) and premailer, run once per issue with holes for personal data."""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
from premailer import Premailer

from mailer.digest import human_date
from mailer.errors import TemplateError
from mailer.models import Digest, Rendered, Spliced

_HOLE = "%%MAILER_{}%%"
_HOLE_RE = re.compile(r"%%MAILER_(\d+)%%")
_ANY_HOLE_RE = re.compile(r"%%MAILER_")

# Fields every recipient has; extra CSV columns are added after these.
BASE_FIELDS = ("email", "name", "unsubscribe_url")


def default_templates_dir() -> Path:
    """Templates inside the installed wheel, else the repository's ``templates/``."""
    here = Path(__file__).resolve().parent
    shipped = here / "templates"
    return shipped if shipped.is_dir() else here.parent / "templates"


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
    return env


class _Personal(str):
    """A hole for one recipient's value. It can be printed, never tested: the template is
    rendered once per issue, so a condition on a personal field cannot be honoured."""

    __slots__ = ()

    def __bool__(self) -> bool:
        raise TemplateError(
            "personal fields (subscriber.*) can only be printed, not used in conditions or "
            "filters; the name already falls back to MAILER_NAME_FALLBACK when empty"
        )


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
) -> tuple[Spliced, Spliced]:
    """Render ``<stem>.html.j2`` (then inline CSS) and ``<stem>.txt.j2`` with holes."""
    holes = _PersonalFields({f: _Personal(_HOLE.format(i)) for i, f in enumerate(fields)})
    ctx = {**context, "subscriber": holes, "recipient": holes}
    html = _render(env, f"{stem}.html.j2", ctx)
    html = inline_css(html, name=f"{stem}.html.j2")
    text = _render(env, f"{stem}.txt.j2", ctx)
    return _split(html, fields, f"{stem}.html.j2"), _split(text, fields, f"{stem}.txt.j2")


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
    html, text = render_template_pair(env, "digest", fields=fields, context=context)
    return Rendered(subject=digest.subject, html=html, text=text)


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


def _split(document: str, fields: Sequence[str], name: str) -> Spliced:
    parts = _HOLE_RE.split(document)
    literals = tuple(parts[0::2])
    slots = tuple(fields[int(i)] for i in parts[1::2])
    if any(_ANY_HOLE_RE.search(lit) for lit in literals):
        raise TemplateError(
            f"template {name}: a personal field was changed by a filter; print it as it is"
        )
    return Spliced(literals=literals, slots=slots)
