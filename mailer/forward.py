"""Send one article to a friend: the forward's guards, its message, its ledger records and
its delivery (``mailer forward`` and the web form call the same functions).

A forward lets a reader choose a recipient and add text under the newsletter's name, so
every input is treated as hostile: names, notes and addresses are checked before anything
is rendered, written or sent, and the ledger caps how many forwards one sender may make.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import html
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from markupsafe import Markup

from mailer.articles import ARTICLE_SUFFIXES, compile_clutter, load_article, load_articles
from mailer.campaign import Outcome, Postmark, run_campaign
from mailer.delivery import Delivery
from mailer.errors import GuardError, InputError
from mailer.headers import address_key, check_visible, normalise_email, page_slug
from mailer.ledger import Campaign, Ledger, State
from mailer.messages import Composer, Envelope
from mailer.models import Article, Recipient, Rendered, SendResult
from mailer.pipeline import check_media_reachable
from mailer.render import personal_fields, render_template_pair
from mailer.settings import Settings
from mailer.suppression_list import SuppressionList
from mailer.transports.base import Transport
from mailer.transports.smtp import SMTPTransport

KIND = "forward"
MAX_FRIENDS = 5
MAX_NOTE_CHARS = 500
MAX_NAME_CHARS = 64
QUOTA_WINDOW = dt.timedelta(hours=24)

# Said for a suppressed friend and for a friend who already has this article: a sender
# learns neither that someone unsubscribed nor what someone else sent them.
CANNOT_FORWARD = "cannot forward this article to {friend}"


class CannotForward(GuardError):
    """A friend who cannot get this forward, suppressed or already sent it: one message for
    both, so that neither is revealed (the web form answers it as if sent)."""


# "Name <address>" (the name optionally in plain double quotes) or a bare address.
_NAMED_RE = re.compile(r'(?:"(?P<quoted>[^"\\]*)"|(?P<plain>[^<>"\\]*?))\s*<(?P<address>[^<>\s]+)>')
# Characters that make a display name parse as something else (another address, a comment,
# a group), and the look of a web or e-mail address: a name is a name.
_NAME_SPECIALS_RE = re.compile(r'[<>"\\()\[\],;:@]')
_NAME_LINK_RE = re.compile(r"(?i)://|\bwww\.|[a-z0-9]\.[a-z]{2,}\b")
# What a mail client might turn into a link in the note: schemes, www., domain.tld.
_LINKISH_RE = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*:\S+|\bwww\.\S+|\b[\w-]+(?:\.[\w-]+)+\b")


@dataclass(frozen=True, slots=True)
class Sender:
    """Who asks for the forward: a display name (may be empty) and a normalised address."""

    name: str
    address: str

    @property
    def display(self) -> str:
        return self.name or self.address


@dataclass(frozen=True, slots=True)
class Forward:
    """One checked request: an article, who sends it, to whom, and the note."""

    article: Article
    sender: Sender
    friends: tuple[str, ...]
    note: str

    @property
    def subject(self) -> str:
        return f"{self.sender.display} shared: {self.article.title}"

    @property
    def preview_name(self) -> str:
        """``forward-<slug>``, safe as a folder name whatever the front matter's slug."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", self.article.slug).strip(".-")
        return f"forward-{slug or 'article'}"

    def campaign_name(self, friend: str) -> str:
        """Stable, so that running the same forward again resumes it (a deferred message)."""
        return f"forward {self.article.slug} from {self.sender.address} to {friend}"


# --- input guards (no file, no ledger) ---------------------------------------------------


def check_address(value: str, *, field: str) -> str:
    """Refuse controls (also encoded), then email-validator's verdict and normalised form."""
    check_visible(field, value)
    try:
        return normalise_email(value)
    except ValueError as exc:
        raise InputError(f"{field}: {exc}") from None


def check_name(name: str, *, field: str = "--sender") -> str:
    check_visible(f"{field} name", name)
    name = " ".join(name.split())
    if len(name) > MAX_NAME_CHARS:
        raise GuardError(f"{field}: the name is longer than {MAX_NAME_CHARS} characters")
    if _NAME_SPECIALS_RE.search(name) or "=?" in name:
        raise InputError(
            f'{field}: the name may not contain < > " \\ ( ) [ ] , ; : @ or =?',
            hint='write it as "Name <address>" or just the address',
        )
    if _NAME_LINK_RE.search(name):
        raise GuardError(f"{field}: the name looks like a web address; give a person's name")
    return name


def parse_sender(value: str) -> Sender:
    """``Name <address>`` or a bare address, and nothing else: one address, no comments,
    no groups, no second pair of brackets."""
    check_visible("--sender", value)
    text = value.strip()
    if "<" not in text and ">" not in text:
        return Sender("", check_address(text, field="--sender"))
    match = _NAMED_RE.fullmatch(text)
    if match is None:
        raise InputError(
            f"--sender: {value!r} is not of the form 'Name <address>' or 'address'",
            hint="give one address; comments, groups and lists are not accepted",
        )
    raw_name = match.group("quoted") if match.group("quoted") is not None else match["plain"]
    name = check_name(raw_name)
    return Sender(name, check_address(match.group("address"), field="--sender"))


def check_note(note: str | None) -> str:
    """Plain text on one line, at most ``MAX_NOTE_CHARS`` characters."""
    if not note:
        return ""
    check_visible("--note", note)
    if len(note) > MAX_NOTE_CHARS:
        raise GuardError(
            f"--note: {len(note)} characters; a note may have at most {MAX_NOTE_CHARS}"
        )
    return note.strip()


def check_friends(values: Sequence[str]) -> tuple[str, ...]:
    if not values:
        raise InputError("--to: give the friend's address")
    if len(values) > MAX_FRIENDS:
        raise GuardError(
            f"--to: {len(values)} addresses; a forward goes to at most {MAX_FRIENDS} friends"
        )
    friends: list[str] = []
    seen: set[str] = set()
    for value in values:
        friend = check_address(value, field="--to")
        if address_key(friend) in seen:
            raise InputError(f"--to: {friend} is given twice")
        seen.add(address_key(friend))
        friends.append(friend)
    return tuple(friends)


def find_article(
    ref: str,
    articles_dir: Path,
    *,
    clutter_patterns: Sequence[str] = (),
    base_url: str | None = None,
    zone: dt.tzinfo = dt.UTC,
) -> Article:
    """A path to an article file inside the articles folder, or an article's slug. A file
    that resolves outside the folder (a symlink leading out) is refused, never read."""
    folder = articles_dir.resolve()
    clutter = compile_clutter(clutter_patterns)
    if "/" in ref or Path(ref).suffix.lower() in ARTICLE_SUFFIXES:
        path = Path(os.path.realpath(ref))  # no RuntimeError on a symlink loop
        if not path.is_relative_to(folder) or any(
            part.startswith((".", "_")) for part in path.relative_to(folder).parts
        ):
            raise InputError(f"{ref}: not an article of the articles folder {articles_dir}")
        if path.suffix.lower() not in ARTICLE_SUFFIXES or not path.is_file():
            raise InputError(f"{ref}: no such article file")
        return load_article(path, clutter=clutter, base_url=base_url, zone=zone, folder=folder)
    if not folder.is_dir():
        raise InputError(f"{articles_dir}: articles folder not found")
    # A file named after the slug is the common case, and needs no other file to parse.
    for suffix in ARTICLE_SUFFIXES:
        for path in sorted(folder.rglob(f"{_glob_escape(ref)}{suffix}")):
            relative = path.relative_to(folder).parts
            if not any(part.startswith((".", "_")) for part in relative) and path.is_file():
                return load_article(
                    path, clutter=clutter, base_url=base_url, zone=zone, folder=folder
                )
    articles = load_articles(
        articles_dir, extra_clutter=clutter_patterns, base_url=base_url, zone=zone
    )
    for article in articles:
        if article.slug == ref or page_slug(article.slug) == ref:  # as the web links it
            return article
    raise InputError(f"{ref}: no article with this slug in {articles_dir}")


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]])", r"[\1]", text)


def prepare_forward(
    settings: Settings,
    *,
    article: str | Article,
    friends: Sequence[str],
    sender: str | Sender,
    note: str | None,
    is_suppressed: Callable[[str], bool],
) -> Forward:
    """Every guard that needs no ledger, for every friend. Raises ``MailerError``.

    ``article`` is a path or slug (``find_article``) or an article already found;
    ``sender`` is parsed by ``parse_sender`` unless it is a ``Sender`` already checked
    (the web form's, whose address its token proves and whose name ``check_name`` passed).
    """
    checked_sender = sender if isinstance(sender, Sender) else parse_sender(sender)
    checked_note = check_note(note)
    checked_friends = check_friends(friends)
    for friend in checked_friends:
        if is_suppressed(friend):
            raise CannotForward(CANNOT_FORWARD.format(friend=friend))
    found = (
        article
        if isinstance(article, Article)
        else find_article(
            article,
            settings.articles_dir,
            clutter_patterns=settings.clutter_patterns,
            base_url=settings.article_base_url,
            zone=settings.zone,
        )
    )
    return Forward(found, checked_sender, checked_friends, checked_note)


# --- ledger guards -----------------------------------------------------------------------


def check_forward_limits(
    ledger: Ledger | None, forward: Forward, *, quota: int, now: dt.datetime | None = None
) -> Forward:
    """The quota per sender and the one-per-friend-and-article rule, from what was sent.

    A second forward of an article to a friend who got it is refused, with the same words
    as for a suppressed address, except in one case: the same command run again to resume
    friends still deferred. Then the friends this sender already reached are left out
    (the request is returned without them). ``ledger`` is ``None`` when there is none yet.
    Run it under the ledger's write lock before a send, so that two runs cannot both pass.
    """
    if ledger is None:
        return forward
    earlier = {f: ledger.campaign(forward.campaign_name(f)) for f in forward.friends}
    resuming = any(
        c is not None and (ledger.counts(c)[State.DEFERRED] or ledger.counts(c)[State.PENDING])
        for c in earlier.values()
    )
    left = []
    for friend in forward.friends:
        mine = earlier[friend]
        if ledger.forward_exists(friend, forward.article.slug):
            if resuming and mine is not None and ledger.counts(mine)[State.SENT]:
                continue  # this very command, run again: that friend is done
            raise CannotForward(CANNOT_FORWARD.format(friend=friend))
        if mine is not None and ledger.counts(mine)[State.FAILED]:
            raise GuardError(
                f"{friend}: the mail server refused this forward before; not sending it again",
                hint=f"`mailer status '{mine.name}'` shows its reply",
            )
        left.append(friend)
    check_quota(ledger, forward.sender.address, len(left), quota=quota, now=now)
    return dataclasses.replace(forward, friends=tuple(left))


def check_quota(
    ledger: Ledger, sender: str, asking: int, *, quota: int, now: dt.datetime | None = None
) -> None:
    """``GuardError`` when ``asking`` more forwards by ``sender`` would pass the quota of
    the last 24 hours. The web form asks it first, before anything about the friend, so
    that its answer never depends on who the friend is."""
    since = (now or dt.datetime.now(dt.UTC)) - QUOTA_WINDOW
    done = ledger.forward_count_since(sender, since)
    if done + asking > quota:
        raise GuardError(
            f"{sender} may forward {quota} articles per 24 hours; "
            f"{done} sent, {max(0, quota - done)} left, {asking} asked",
            hint="try again later",
        )


def start_campaigns(ledger: Ledger, forward: Forward) -> list[Campaign]:
    """One campaign per friend, each linked to its forward record (once)."""
    campaigns = []
    for friend in forward.friends:
        name = forward.campaign_name(friend)
        is_new = ledger.campaign(name) is None
        campaign = ledger.start_campaign(
            name, kind=KIND, subject=forward.subject, recipients=[Recipient(email=friend)]
        )
        if is_new:
            ledger.record_forward(
                campaign,
                sender=forward.sender.address,
                friend=friend,
                article=forward.article.slug,
            )
        campaigns.append(campaign)
    return campaigns


# --- the message -------------------------------------------------------------------------


def note_html(note: str) -> Markup:
    """The note escaped, with the dots and colons of anything link-like in their own
    ``<span>``, so that mail clients that linkify text see no address to link."""
    out: list[str] = []
    last = 0
    for match in _LINKISH_RE.finditer(note):
        out.append(html.escape(note[last : match.start()]))
        out.append(re.sub(r"([.:])", r"<span>\1</span>", html.escape(match.group(0))))
        last = match.end()
    out.append(html.escape(note[last:]))
    return Markup("".join(out))


def render_forward(
    forward: Forward, *, env: jinja2.Environment, newsletter: dict[str, object]
) -> Rendered:
    """Render and inline ``forward.html.j2`` / ``forward.txt.j2`` once for every friend."""
    context = {
        "newsletter": newsletter,
        "article": forward.article,
        # ``named`` is false for a bare address: then ``name`` is the address itself.
        "sender": {
            "name": forward.sender.display,
            "address": forward.sender.address,
            "named": bool(forward.sender.name),
        },
        "note": forward.note,
        "note_html": note_html(forward.note),
        "forward": {"subject": forward.subject},
    }
    html_doc, text_doc = render_template_pair(
        env, "forward", fields=personal_fields(()), context=context
    )
    return Rendered(subject=forward.subject, html=html_doc, text=text_doc)


def forward_composer(
    settings: Settings, forward: Forward, rendered: Rendered, friend: str
) -> Composer:
    """From the newsletter's own address (DMARC), named after the sender; replies go to
    the sender; no unsubscribe token, as the friend is not a subscriber."""
    envelope = Envelope(
        from_name=f"{forward.sender.display} via {settings.newsletter_name}",
        from_address=settings.from_address,
        list_id="",  # a forward is a one-off message, not list mail
        unsubscribe_url=settings.unsubscribe_url,
        reply_to=forward.sender.address,
    )
    return Composer(
        rendered,
        envelope,
        unsubscribe_token=None,
        campaign_key=forward.campaign_name(friend),
        name_fallback=settings.name_fallback,
    )


# --- delivery ----------------------------------------------------------------------------


@dataclass
class Watch:
    """What a caller sees of one friend's send: the CLI draws its progress, the web nothing.
    ``close`` is called after the send whatever happened, ``done`` with its outcome."""

    start: Callable[[Delivery, int], None] | None = None
    result: Callable[[SendResult], None] | None = None
    close: Callable[[], None] | None = None
    done: Callable[[Outcome], None] | None = None


@dataclass
class Delivered:
    """What ``deliver_forward`` did: friends left out as already reached, and each send."""

    request: Forward  # the friends still to send when it started
    already_sent: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def stopped(self) -> bool:
        return any(outcome.stopped for outcome in self.outcomes)


def deliver_forward(
    settings: Settings,
    request: Forward,
    rendered: Rendered,
    suppression: SuppressionList,
    *,
    transport: Transport | None = None,
    watch: Callable[[str], Watch] | None = None,
    on_already_sent: Callable[[str], None] | None = None,
    ledger_wait: float = 2.0,
) -> Delivered:
    """Check the ledger's guards under its write lock, record one campaign per friend, and
    send them all over one transport in one event loop (its own: call it from a thread, not
    from a running loop). Every SMTP step is bounded by ``MAILER_SMTP_TIMEOUT``, and retries
    by ``MAILER_MAX_ATTEMPTS``. Raises ``MailerError`` (``GuardError`` for a guard,
    ``LedgerBusy`` while a send holds the ledger, ``DeliveryError`` if the relay cannot be
    used)."""
    check_media_reachable([request.article], settings)  # before anything is recorded
    transport = transport or SMTPTransport(settings.smtp_config())
    policy = settings.delivery_policy()
    postmark = Postmark.from_settings(settings)
    with Ledger.open(settings.ledger, wait=ledger_wait, lease=settings.ledger_lease) as ledger:
        asked = request.friends
        request = check_forward_limits(ledger, request, quota=settings.forward_daily_quota)
        delivered = Delivered(request, [f for f in asked if f not in request.friends])
        for friend in delivered.already_sent:
            if on_already_sent is not None:
                on_already_sent(friend)
        if not request.friends:
            return delivered
        campaigns = start_campaigns(ledger, request)

        async def send_all() -> None:
            for friend, campaign in zip(request.friends, campaigns, strict=True):
                seen = watch(friend) if watch is not None else Watch()
                try:
                    outcome = await run_campaign(
                        ledger,
                        campaign,
                        transport,
                        policy,
                        forward_composer(settings, request, rendered, friend).compose,
                        suppression=suppression,
                        postmark=postmark,
                        on_start=seen.start,
                        on_result=seen.result,
                    )
                finally:
                    if seen.close is not None:
                        seen.close()
                if seen.done is not None:
                    seen.done(outcome)
                delivered.outcomes.append(outcome)
                if outcome.stopped:
                    break

        asyncio.run(send_all())
    return delivered
