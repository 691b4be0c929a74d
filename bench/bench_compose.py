"""Benchmark: CPU per personalised digest message, spliced vs. rendered per recipient.

Builds a synthetic 20-article digest (about 60 KB of HTML after CSS inlining) in a temporary
folder, times the one-time cost (Jinja render + premailer, then the Composer's encoding of
the shared parts), then composes N personalised messages with ``mailer.messages.Composer``.
For comparison it also times the naive way for a few hundred recipients: a Jinja render,
a premailer pass and an ``EmailMessage`` build per recipient.

    .venv/bin/python bench/bench_compose.py            # 20,000 messages
    .venv/bin/python bench/bench_compose.py --n 5000 --naive 100

Target (issue 2): at most 0.3 ms of CPU per personalised message. It is a benchmark, not a
test: run it by hand. ``--check`` exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email
import email.policy
import email.utils
import sys
import tempfile
import time
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace

from mailer.articles import load_articles
from mailer.digest import build_digest
from mailer.headers import MAX_LINE
from mailer.messages import Composer, Envelope
from mailer.models import Recipient
from mailer.render import inline_css, make_environment, render_digest
from mailer.tokens import make_token

TARGET_MS = 0.3
ISSUE_DATE = dt.date(2026, 11, 27)
NEWSLETTER = {
    "name": "The Bench Weekly",
    "from_address": "news@example.com",
    "subscribe_url": None,
}
SECRET = "bench-secret-key-0123456789"
UNSUBSCRIBE_URL = "https://example.com/unsubscribe"
CITIES = ("Northfield", "Riverside", "Hartley", "Mill Bridge", "Zürich")
SENTENCE = (
    "The council's transport committee met on Tuesday evening to hear from residents about "
    "the proposed changes to the ring road, the bus station and the cycle lanes on Mill Lane. "
)


def write_articles(folder: Path, count: int = 20) -> None:
    for i in range(count):
        day = ISSUE_DATE - dt.timedelta(days=i % 7)
        summary = (SENTENCE * 11).strip()
        folder.joinpath(f"{day.isoformat()}-story-{i:02d}.md").write_text(
            "---\n"
            f"title: Story number {i + 1} about the town's plans for the coming year\n"
            f"date: {day.isoformat()}\n"
            f"url: https://example.com/news/{day.isoformat()}/story-{i + 1}\n"
            f"author: Reporter {i % 5 + 1}\n"
            f"image: https://example.com/images/story-{i + 1}.jpg\n"
            f"summary: {summary}\n"
            "---\n\n"
            f"{SENTENCE * 10}\n\nA second paragraph.\n",
            encoding="utf-8",
        )


def recipient(i: int) -> Recipient:
    return Recipient(
        email=f"reader.{i}@example.org",
        name=f"Reader Number {i}" if i % 10 else "",
        fields={"city": CITIES[i % len(CITIES)]},
    )


def naive_message(env, digest, person: Recipient, when: dt.datetime) -> bytes:
    """What the splice avoids: render, inline and build a whole message per recipient."""
    token = make_token(SECRET, "bench", person.email)
    subscriber = SimpleNamespace(
        email=person.email,
        name=person.name or "reader",
        unsubscribe_url=f"{UNSUBSCRIBE_URL}?token={token}",
        **person.fields,
    )
    context = {
        "digest": digest,
        "articles": digest.articles,
        "newsletter": NEWSLETTER,
        "subscriber": subscriber,
        "recipient": subscriber,
    }
    html = inline_css(env.get_template("digest.html.j2").render(context))
    text = env.get_template("digest.txt.j2").render(context)
    msg = EmailMessage()
    msg["From"] = Address(NEWSLETTER["name"], addr_spec=NEWSLETTER["from_address"])
    msg["To"] = Address(person.name, addr_spec=person.email)
    msg["Subject"] = digest.subject
    msg["Date"] = email.utils.format_datetime(when)
    msg["Message-ID"] = email.utils.make_msgid(domain="example.com")
    msg["List-Id"] = "The Bench Weekly <bench.example.com>"
    msg["List-Unsubscribe"] = f"<{subscriber.unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text, cte="quoted-printable")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    return msg.as_bytes(policy=email.policy.SMTP)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="messages to compose (20,000)")
    parser.add_argument("--naive", type=int, default=200, help="naive messages to build (200)")
    parser.add_argument("--check", action="store_true", help="exit 1 if over the target")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        folder = Path(tmp) / "articles"
        folder.mkdir()
        write_articles(folder)
        articles = load_articles(folder)

        cpu0, wall0 = time.process_time(), time.perf_counter()
        env = make_environment(None)
        digest = build_digest(articles, newsletter=NEWSLETTER["name"], issue_date=ISSUE_DATE)
        rendered = render_digest(digest, env=env, newsletter=NEWSLETTER, extra_fields=["city"])
        cpu1, wall1 = time.process_time(), time.perf_counter()
        composer = Composer(
            rendered,
            Envelope(
                from_name=NEWSLETTER["name"],
                from_address=NEWSLETTER["from_address"],
                list_id="bench.example.com",
                unsubscribe_url=UNSUBSCRIBE_URL,
            ),
            unsubscribe_token=lambda r: make_token(SECRET, "bench", r.email),
            campaign_key="The Bench Weekly 2026-11-27",
        )
        cpu2 = time.process_time()

        html_kb = len("".join(rendered.html.literals).encode()) / 1024
        text_kb = len("".join(rendered.text.literals).encode()) / 1024
        print(
            f"digest: {len(digest.articles)} articles, HTML {html_kb:.1f} KB after inlining, "
            f"text {text_kb:.1f} KB, {len(rendered.html.slots)} personal holes in the HTML"
        )
        print(
            f"one-time: render + premailer {(cpu1 - cpu0) * 1000:.1f} ms CPU "
            f"({(wall1 - wall0) * 1000:.1f} ms wall); composer setup "
            f"{(cpu2 - cpu1) * 1000:.2f} ms CPU"
        )

        people = [recipient(i) for i in range(args.n)]
        size = 0
        start = time.process_time()
        for index, person in enumerate(people, 1):
            size += len(composer.compose(person, index).data)
        spliced_cpu = time.process_time() - start
        per_message = spliced_cpu * 1000 / args.n
        print(
            f"spliced: {args.n} messages in {spliced_cpu:.2f} s CPU = {per_message:.4f} ms CPU "
            f"per message (target <= {TARGET_MS} ms), {size / args.n / 1024:.1f} KB each"
        )

        sample = composer.compose(people[-1], args.n).data
        parsed = email.message_from_bytes(sample, policy=email.policy.default)
        assert parsed.get_content_type() == "multipart/alternative"
        assert all(len(line) <= MAX_LINE for line in sample.split(b"\r\n"))

        when = dt.datetime.now(dt.UTC)
        start = time.process_time()
        for person in people[: args.naive]:
            naive_message(env, digest, person, when)
        naive_cpu = time.process_time() - start
        naive_per = naive_cpu * 1000 / args.naive
        print(
            f"naive: {args.naive} messages (Jinja render + premailer + EmailMessage each) in "
            f"{naive_cpu:.2f} s CPU = {naive_per:.2f} ms CPU per message"
        )
        print(f"ratio: naive / spliced = {naive_per / per_message:.0f}x")

    ok = per_message <= TARGET_MS
    print("OK: within the target" if ok else "OVER TARGET")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
