"""Builds one issue from settings and options: articles → digest → render → composer."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mailer.articles import SkipHandler, load_articles, read_image
from mailer.csvfile import read_header
from mailer.digest import build_digest, window_start
from mailer.errors import InputError
from mailer.headers import is_web_url
from mailer.messages import Composer, Envelope
from mailer.models import Article, Digest, Recipient, Rendered
from mailer.render import SiteLinks, make_environment, media_path, render_digest
from mailer.settings import Settings
from mailer.subscribers import LIST_HINT, list_name, resolve_list, template_fields
from mailer.tokens import make_token


@dataclass(frozen=True)
class DigestOptions:
    issue_date: dt.date  # the issue date in the newsletter's zone
    days: int = 7
    max_articles: int | None = None
    subject: str | None = None
    list_ref: str | None = None
    campaign: str | None = None


@dataclass
class PreparedIssue:
    """Everything needed to produce one message per recipient of this issue."""

    digest: Digest
    rendered: Rendered
    composer: Composer
    list_path: Path
    campaign: str
    fields: tuple[str, ...]  # the list's extra columns the templates may use
    cutoff: dt.datetime  # the instant the articles were chosen at
    fingerprint: str  # what every recipient's copy is made of, for resumes to compare
    archive_dir: Path | None = None  # where a send keeps the issue for the archive pages


def newsletter_context(settings: Settings) -> dict[str, object]:
    """What every template (mail and web pages) knows of the newsletter; ``links`` are the
    addresses on the public site, all ``None`` without ``MAILER_PUBLIC_URL``."""
    return {
        "name": settings.newsletter_name,
        "from_address": settings.from_address,
        "subscribe_url": settings.subscribe_url,
        "public_url": settings.public_url,
        "links": SiteLinks(settings.public_url),
    }


def envelope(settings: Settings) -> Envelope:
    return Envelope(
        from_name=settings.newsletter_name,
        from_address=settings.from_address,
        list_id=settings.effective_list_id,
        unsubscribe_url=settings.unsubscribe_url,
        reply_to=settings.reply_to,
        unsubscribe_mailto=settings.unsubscribe_mailto,
        archive_url=SiteLinks(settings.public_url).archive,
    )


def campaign_name(list_path: Path, issue_date: dt.date) -> str:
    """A digest campaign is one issue to one list: ``<list> <issue date>``."""
    return f"{list_name(list_path)} {issue_date.isoformat()}"


def prepare_digest(
    settings: Settings,
    options: DigestOptions,
    *,
    fields: Sequence[str] | None = None,
    cutoff: dt.datetime | None = None,
    on_skip: SkipHandler | None = None,
) -> PreparedIssue:
    """Load, select, render and inline once. Raises ``MailerError`` on any bad input.

    ``fields`` are the list columns templates may use (default: the list's header now; a
    resumed campaign passes those frozen with its audience), and ``cutoff`` the instant the
    articles are chosen at (default: now; a resumed campaign passes its own, so that it
    sends the issue it started). ``on_skip`` hears of article files that are not read (a
    symlink leading out of the articles folder, a pipe).
    """
    list_path = resolve_list(
        options.list_ref if options.list_ref is not None else settings.default_list,
        settings.lists_dir,
        hint=LIST_HINT,
        must_exist=fields is None,  # a resume has its audience and columns frozen
    )
    columns = tuple(template_fields(read_header(list_path)) if fields is None else fields)
    moment = cutoff if cutoff is not None else dt.datetime.now(dt.UTC)
    digest = select_issue(settings, options, cutoff=moment, on_skip=on_skip)
    env = make_environment(settings.templates_dir)
    rendered = render_digest(
        digest,
        env=env,
        newsletter=newsletter_context(settings),
        extra_fields=list(columns),
    )
    name = list_name(list_path)
    secret = settings.secret_key.get_secret_value()
    campaign = options.campaign or campaign_name(list_path, options.issue_date)
    mail = envelope(settings)

    def forward_token(r: Recipient) -> str:
        return make_token(secret, name, r.email, purpose="forward")

    composer = Composer(
        rendered,
        mail,
        unsubscribe_token=lambda r: make_token(secret, name, r.email),
        campaign_key=campaign,
        name_fallback=settings.name_fallback,
        # The forward form is on the public site: no site, no forward links.
        forward_token=forward_token if settings.public_url else None,
    )
    return PreparedIssue(
        digest=digest,
        rendered=rendered,
        composer=composer,
        list_path=list_path,
        campaign=campaign,
        fields=columns,
        cutoff=moment,
        fingerprint=fingerprint(rendered, mail, settings.name_fallback),
        archive_dir=settings.archive_dir,
    )


def select_issue(
    settings: Settings,
    options: DigestOptions,
    *,
    cutoff: dt.datetime | None = None,
    on_skip: SkipHandler | None = None,
) -> Digest:
    """The articles of one issue (what a send would carry, and what the archive keeps), as of
    ``cutoff`` (default: now). ``InputError`` when there is none: nothing to send or keep."""
    moment = cutoff if cutoff is not None else dt.datetime.now(dt.UTC)
    zone = settings.zone
    articles = load_articles(
        settings.articles_dir,
        extra_clutter=settings.clutter_patterns,
        base_url=settings.article_base_url,
        zone=zone,
        on_skip=on_skip,
    )
    digest = build_digest(
        articles,
        newsletter=settings.newsletter_name,
        issue_date=options.issue_date,
        days=options.days,
        max_articles=options.max_articles,
        subject=options.subject,
        zone=zone,
        now=moment,
    )
    if not digest.articles:
        start = window_start(options.issue_date, options.days)
        after = f"after {start} and " if start is not None else ""
        raise InputError(
            f"no articles in {settings.articles_dir} dated {after}on or before "
            f"{options.issue_date} (and not after now); nothing to send"
        )
    return digest


def fingerprint(rendered: Rendered, mail: Envelope, name_fallback: str) -> str:
    """A hash of everything every copy of an issue is made of, but the personal fields and
    the Date header: two runs with the same fingerprint send the same issue."""
    digest = hashlib.sha256()
    parts: list[str] = [
        rendered.subject,
        mail.from_name,
        mail.from_address,
        mail.list_id or "",
        mail.reply_to or "",
        mail.unsubscribe_url,
        mail.unsubscribe_mailto or "",
        name_fallback,
    ]
    if mail.archive_url:  # only when set, so that older campaigns keep their fingerprint
        parts.append(mail.archive_url)
    for doc in (rendered.html, rendered.text):
        parts += [str(len(doc.literals)), *doc.literals, *doc.slots]
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:32]


def local_images(articles: Iterable[Article]) -> list[Article]:
    """The articles whose image is a file in the articles folder, not an http(s) URL."""
    return [a for a in articles if a.image and not is_web_url(a.image)]


def preview_media(articles: Iterable[Article], articles_dir: Path) -> dict[str, bytes]:
    """The local images of some articles as a preview folder holds them, beside its HTML:
    ``{"media/images/market-hall.jpg": b"..."}`` (the ``src`` that ``links.image`` gives
    without a public URL). Each is read and checked again as it is now (inside the folder,
    an image of its type, at most ``MAX_IMAGE_BYTES``); ``InputError`` names one that is not."""
    found: dict[str, bytes] = {}
    for article in local_images(articles):
        image = article.image or ""
        try:
            found[media_path(image, quoted=False)] = read_image(articles_dir, image)
        except ValueError as exc:
            raise InputError(f"{article.source}: image {exc}") from None
    return found


def check_media_reachable(articles: Iterable[Article], settings: Settings) -> None:
    """A send needs every image on the web: a local image needs ``MAILER_PUBLIC_URL`` (the
    site serves it at ``<public>/media/<path>``), else ``InputError``: the message would
    show each reader a broken image. Previews need nothing (they hold the images)."""
    local = local_images(articles)
    if local and not settings.public_url:
        article = local[0]
        raise InputError(
            f"{article.source}: image {article.image} is a local file, which readers "
            "cannot load from an e-mail",
            hint=f"nothing was sent; set MAILER_PUBLIC_URL (`mailer serve` serves the image "
            f"at <public URL>/{media_path(article.image or '')}), or give an https image URL",
        )
