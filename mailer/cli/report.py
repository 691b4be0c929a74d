"""The body of ``mailer status``: what the ledger knows about a campaign, for people and
scripts (imported only when the command runs)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailer.cli.common import plural
from mailer.errors import LedgerBusy, MailerError
from mailer.ledger import Campaign, DeliveryRow, Ledger, State, WorkerProgress, is_url
from mailer.settings import load_settings

if TYPE_CHECKING:
    from mailer.bounces import BounceCounts

# Where `mailer bounces scan` keeps what it read, beside a ledger file (mailer.bounces'
# RECORD_FILE; repeated so that `mailer status` imports the bounce reader only when needed).
BOUNCE_RECORD = "bounces.sqlite3"

# The order in which states are shown: outcomes first, then what is left to do.
SHOWN: tuple[State, ...] = (
    State.SENT,
    State.DEFERRED,
    State.FAILED,
    State.UNKNOWN,
    State.SKIPPED,
    State.PENDING,
    State.SENDING,
)


def run(
    campaign: str | None,
    list_: str | None,
    *,
    as_json: bool,
    all_: bool,
    failures: int,
    ledger_file: str | None,
) -> None:
    """What `mailer status` shows (see its help); imported only when it runs."""
    state = None
    if list_ is not None:
        try:
            state = State(list_.lower())
        except ValueError:
            names = ", ".join(s.value for s in State)
            raise MailerError(f"--list: {list_[:40]!r} is not a state (one of: {names})") from None
    if all_ and (campaign is not None or state is not None):
        raise MailerError("--all lists every campaign; it takes no CAMPAIGN and no --list")
    path = load_settings(ledger=ledger_file).ledger
    if not is_url(path) and not Path(path).is_file():
        raise MailerError(
            f"{path}: no ledger yet",
            hint="a campaign is recorded when it is sent (`mailer digest --send`); "
            "--ledger or MAILER_LEDGER names another file",
        )
    bounces = _bounce_mail(path)
    with _open(path) as ledger:
        if all_:
            _show_all(ledger, bounces, as_json=as_json)
            return
        chosen = _pick(ledger, campaign)
        if state is not None:
            _show_addresses(ledger, chosen, state, as_json=as_json)
        else:
            _show_campaign(ledger, chosen, bounces, failures=failures, as_json=as_json)


def _bounce_mail(path: Path | str) -> dict[int, BounceCounts] | None:
    """Addresses reported by bounce mail per campaign, from the record beside a ledger file;
    None when no scan has run there (or the ledger is PostgreSQL, with no file beside it)."""
    if is_url(path):
        return None
    record = Path(path).parent / BOUNCE_RECORD
    if not record.is_file():
        return None
    from mailer.bounces import bounce_counts

    return bounce_counts(record)


def _bounce_json(bounces: dict[int, BounceCounts] | None, campaign: Campaign) -> Any:
    if bounces is None:
        return None
    found = bounces.get(campaign.id)
    return {"hard": found.hard if found else 0, "soft": found.soft if found else 0}


def _open(path: Path | str) -> Ledger:
    """Open for writing when no send runs (so rows a dead run left ``sending`` are shown as
    the ``unknown`` they are); during a send, read its live counts without the lock. A
    shared (PostgreSQL) ledger is only read: its senders recover the rows of the dead."""
    if is_url(path):
        return Ledger.open(path, readonly=True)
    try:
        return Ledger.open(path)
    except LedgerBusy:
        return Ledger.open(path, readonly=True)


def _pick(ledger: Ledger, name: str | None) -> Campaign:
    if name is None:
        latest = ledger.latest_campaign()
        if latest is None:
            raise MailerError(f"{ledger.path}: no campaign yet")
        return latest
    found = ledger.campaign(name)
    if found is None:
        raise MailerError(
            f"no campaign named {name!r} in {ledger.path}",
            hint="`mailer status --all` lists the campaigns",
        )
    return found


def _show_all(ledger: Ledger, bounces: dict[int, BounceCounts] | None, *, as_json: bool) -> None:
    campaigns = ledger.campaigns()
    if as_json:
        payload = [
            {
                **_campaign_json(each),
                "counts": _counts_json(ledger.counts(each)),
                "bounce_mail": _bounce_json(bounces, each),
            }
            for each in campaigns
        ]
        print(json.dumps({"ledger": str(ledger.path), "campaigns": payload}, indent=2))
        return
    if not campaigns:
        print(f"No campaign in {ledger.path} yet.")
        return
    width = max(len("CAMPAIGN"), *(len(each.name) for each in campaigns))
    columns = "".join(f"{state.value:>10}" for state in SHOWN)
    if bounces is not None:  # bounce mail, once `mailer bounces scan` has run
        columns += f"{'hard':>7}{'soft':>7}"
    print(f"{'CAMPAIGN':<{width}}  {'KIND':<8}{'STARTED':<18}{'TOTAL':>8}{columns.upper()}")
    for each in campaigns:
        counts = ledger.counts(each)
        numbers = "".join(f"{counts[state]:>10,}" for state in SHOWN)
        if bounces is not None:
            found = bounces.get(each.id)
            numbers += f"{found.hard if found else 0:>7,}{found.soft if found else 0:>7,}"
        print(
            f"{each.name:<{width}}  {each.kind:<8}{_when(each.created_at):<18}"
            f"{each.frozen_count:>8,}{numbers}"
        )


def _show_addresses(ledger: Ledger, campaign: Campaign, state: State, *, as_json: bool) -> None:
    addresses = ledger.addresses(campaign, state)
    if as_json:
        document = {"campaign": campaign.name, "state": state.value, "addresses": list(addresses)}
        print(json.dumps(document, indent=2))
        return
    for address in addresses:
        print(address)


def _show_campaign(
    ledger: Ledger,
    campaign: Campaign,
    bounces: dict[int, BounceCounts] | None,
    *,
    failures: int,
    as_json: bool,
) -> None:
    counts = ledger.counts(campaign)
    recent = ledger.recent_failures(campaign, failures) if failures else []
    hard = len(ledger.hard_bounces(campaign))
    workers = ledger.workers(campaign)
    if as_json:
        document = {
            "ledger": str(ledger.path),
            "live": _live(ledger, workers),
            "campaign": _campaign_json(campaign),
            "counts": _counts_json(counts),
            "hard_bounces": hard,
            "bounce_mail": _bounce_json(bounces, campaign),
            "recent_failures": [_row_json(row) for row in recent],
        }
        if workers:
            document["workers"] = [
                {"worker": w.worker, "alive": w.alive, "counts": _counts_json(w.counts)}
                for w in workers
            ]
        print(json.dumps(document, indent=2))
        return
    mail = _bounce_json(bounces, campaign)
    for line in _describe(ledger, campaign, counts, recent, hard, workers, mail):
        print(line)


def _live(ledger: Ledger, workers: list[WorkerProgress]) -> bool:
    """Whether a send is running: the lock is held (SQLite), or a sender is alive."""
    return any(w.alive for w in workers) if is_url(str(ledger.path)) else ledger.readonly


def _describe(
    ledger: Ledger,
    campaign: Campaign,
    counts: dict[State, int],
    recent: list[DeliveryRow],
    hard: int,
    workers: list[WorkerProgress],
    bounce_mail: dict[str, int] | None,
) -> Iterator[str]:
    yield f"Campaign  {campaign.name} ({campaign.kind})"
    if campaign.subject:
        yield f"Subject   {campaign.subject}"
    source = f"{campaign.list_path}, " if campaign.list_path else ""
    yield (
        f"Audience  {source}{plural(campaign.frozen_count, 'recipient')}, "
        f"frozen {_when(campaign.created_at)}"
    )
    live = _live(ledger, workers)
    if live:
        yield "Running   a send is in progress: these counts are live"
    elif campaign.finished_at is not None:
        yield f"Finished  {_when(campaign.finished_at)}"
    yield ""
    for state in SHOWN:
        yield f"  {state.value:<10}{counts[state]:>10,}"
    if bounce_mail is not None:
        yield ""
        yield (
            f"Bounces   {plural(bounce_mail['hard'], 'address', 'addresses')} hard, "
            f"{bounce_mail['soft']:,} soft, in bounce mail read by `mailer bounces scan`"
        )
    if workers:
        yield ""
        yield "Senders:"
        width = max(len(w.worker) for w in workers)
        for w in workers:
            done = ", ".join(f"{w.counts[s]:,} {s.value}" for s in SHOWN if w.counts[s])
            yield f"  {w.worker:<{width}}  {'running' if w.alive else 'gone':<8} {done}"
    if recent:
        yield ""
        yield "Recent failures:"
        width = max(len(row.email) for row in recent)
        for row in recent:
            reply = " ".join(f"{row.last_code or ''} {row.last_reply or ''}".split())
            yield f"  {row.email:<{width}}  {row.state.value:<9} {reply or '(no reply)'}"
    notes = []
    if hard:
        notes.append(
            f"{plural(hard, 'hard bounce')} (5.1.x: no such user) recorded for suppression."
        )
    unknown = counts[State.UNKNOWN]
    if unknown:
        them = "it" if unknown == 1 else "them"
        notes.append(
            f"{plural(unknown, 'message')} with no recorded reply (unknown): the server may "
            f"have accepted {them}, so a resume leaves {them} alone unless given "
            "--resend-unknown. `mailer status --list unknown` lists "
            f"{'it' if unknown == 1 else 'them'}."
        )
    skipped = counts[State.SKIPPED]
    if skipped:
        notes.append(
            f"{plural(skipped, 'recipient')} skipped: suppressed (unsubscribed, bounced or "
            "complained) after the campaign started; `mailer status --list skipped` lists them."
        )
    left = counts[State.PENDING] + counts[State.DEFERRED]
    if left and not live:
        notes.append(
            f"{plural(left, 'recipient')} left to send (pending or deferred): run the same "
            "send again to resume."
        )
    if notes:
        yield ""
        yield from notes


def _campaign_json(campaign: Campaign) -> dict[str, Any]:
    return {
        "name": campaign.name,
        "kind": campaign.kind,
        "subject": campaign.subject,
        "list": campaign.list_path,
        "issue_date": campaign.issue_date.isoformat() if campaign.issue_date else None,
        "recipients": campaign.frozen_count,
        "created_at": campaign.created_at.isoformat(),
        "finished_at": campaign.finished_at.isoformat() if campaign.finished_at else None,
    }


def _counts_json(counts: dict[State, int]) -> dict[str, int]:
    return {state.value: counts[state] for state in SHOWN}


def _row_json(row: DeliveryRow) -> dict[str, Any]:
    return {
        "email": row.email,
        "state": row.state.value,
        "code": row.last_code,
        "reply": row.last_reply,
        "attempts": row.attempts,
        "hard_bounce": row.hard_bounce,
        "message_id": row.message_id,
        "updated_at": row.updated_at.isoformat(),
    }


def _when(moment: dt.datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M %Z")
