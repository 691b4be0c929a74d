"""Bounce mail over IMAP, against a real Dovecot started by the test (IMAP over TLS): the
same corpus reads as it does from a Maildir, what was read is moved (never deleted), a
second scan changes nothing, and every failure is one line."""

from __future__ import annotations

import email
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
import typer
from typer.testing import CliRunner

from mailer.bounces import MAX_MESSAGE, SqliteStore, read_imap, read_maildir
from mailer.cli.common import reports_errors
from mailer.errors import ConfigError, DeliveryError
from tests.dsn import EXPECTED, HARD, SECRET, corpus, make_maildir, scan_with
from tests.imap import ImapServer, imap_server
from tests.smtpd import closed_port


@pytest.fixture
def server() -> Iterator[ImapServer]:
    with imap_server() as running:
        yield running


def messages(server: ImapServer, **options: object) -> Iterator[bytes]:
    return read_imap(
        server.host,
        server.port,
        server.username,
        server.password,
        ca_file=server.ca_file,
        **options,  # type: ignore[arg-type]
    )


def message_ids(raws: list[bytes]) -> list[str]:
    return sorted(str(email.message_from_bytes(raw).get("Message-ID", "")) for raw in raws)


def without_order(summary: dict[str, object]) -> dict[str, object]:
    out = dict(summary)
    out["suppressed"] = sorted(map(str, summary["suppressed"]))  # type: ignore[call-overload]
    out["bounces"] = sorted(summary["bounces"], key=repr)  # type: ignore[call-overload]
    return out


@pytest.mark.slow
def test_an_imap_scan_reads_like_a_maildir_scan_moves_what_it_read_and_runs_once(
    tmp_path: Path, server: ImapServer
) -> None:
    server.append(path.read_bytes() for path in corpus())
    sent = message_ids(server.folder("INBOX"))
    record = tmp_path / "imap" / ".mailer" / "bounces.sqlite3"
    with SqliteStore(record) as store:
        over_imap, suppression = scan_with(messages(server), tmp_path / "imap", store)
    with SqliteStore(tmp_path / "maildir" / "bounces.sqlite3") as store:
        maildir = make_maildir(tmp_path / "Maildir", corpus())
        from_maildir, _ = scan_with(read_maildir(maildir), tmp_path / "maildir", store)

    assert without_order(over_imap) == without_order(from_maildir)
    assert over_imap["messages"] == len(EXPECTED)
    assert (over_imap["hard"], over_imap["soft"], over_imap["auto_replies"]) == (5, 2, 4)
    assert set(map(str, over_imap["suppressed"])) == HARD  # type: ignore[call-overload]
    for address in HARD:
        entry = suppression.get(address)
        assert entry is not None and entry.reason == "bounced"
    # Moved, not deleted: the INBOX is empty, every message is in Processed.
    assert server.folder("INBOX") == []
    assert message_ids(server.folder("Processed")) == sent

    suppressed_file = tmp_path / "imap" / "lists" / "suppressed.csv"
    before = (suppressed_file.read_bytes(), record.read_bytes())
    with SqliteStore(record) as store:
        second, _ = scan_with(messages(server), tmp_path / "imap", store)
    assert second["messages"] == 0 and second["suppressed"] == []
    assert (suppressed_file.read_bytes(), record.read_bytes()) == before

    # The same messages back in the INBOX (as after a crash between acting and moving):
    # all seen before, nothing changes, and they are moved again.
    server.append(path.read_bytes() for path in corpus())
    with SqliteStore(record) as store:
        third, _ = scan_with(messages(server), tmp_path / "imap", store)
    assert third["messages"] == third["already_seen"] == len(EXPECTED)
    assert third["suppressed"] == [] and third["hard"] == third["soft"] == 0
    assert (suppressed_file.read_bytes(), record.read_bytes()) == before
    assert server.folder("INBOX") == []
    assert len(server.folder("Processed")) == 2 * len(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("capability", ["IMAP4rev1 UIDPLUS", "IMAP4rev1"])
def test_without_move_a_message_is_copied_then_expunged(capability: str) -> None:
    with imap_server(capability=capability) as server:
        server.append(path.read_bytes() for path in corpus()[:3])
        assert len(list(messages(server, done_folder="Done"))) == 3
        assert server.folder("INBOX") == []
        assert len(server.folder("Done")) == 3


@pytest.mark.slow
def test_an_abandoned_scan_moves_only_what_was_acted_on_and_reads_within_bounds(
    server: ImapServer,
) -> None:
    big = b"Subject: huge\r\nMessage-ID: <huge@example.org>\r\n\r\n" + b"x" * (2 * MAX_MESSAGE)
    server.append([*(path.read_bytes() for path in corpus()[:3]), big])
    reading = messages(server)
    next(reading)
    next(reading)  # the first is acted on; the second was handed out when the scan stopped
    reading.close()  # type: ignore[attr-defined]
    assert len(server.folder("Processed")) == 1
    assert len(server.folder("INBOX")) == 3
    rest = list(messages(server))
    assert [len(raw) for raw in rest][-1] == MAX_MESSAGE
    assert len(server.folder("Processed")) == 4


def one_line(call: object) -> tuple[int, str]:
    """Run ``call`` as a command does: its error as the CLI prints it, and the exit code."""
    app = typer.Typer()

    @app.command()
    @reports_errors
    def run() -> None:
        list(call())  # type: ignore[operator]

    result = CliRunner().invoke(app, [])
    return result.exit_code, result.output


@pytest.mark.slow
def test_a_wrong_password_is_one_line_naming_the_setting(server: ImapServer) -> None:
    secret = "not-the-password-" + server.password
    # One attempt only: Dovecot delays each further failure from the same address.
    code, output = one_line(
        lambda: read_imap(server.host, server.port, "bounces", secret, ca_file=server.ca_file)
    )
    assert code == 2  # a ConfigError
    assert output.startswith("Error: IMAP server 127.0.0.1:") and "Traceback" not in output
    assert "MAILER_IMAP_USERNAME='bounces'" in output and "Authentication failed" in output
    assert secret not in output and server.password not in output
    assert len(output.splitlines()) == 2  # the error and its hint


@pytest.mark.slow
def test_tls_with_an_untrusted_ca_is_one_line_and_reads_nothing(
    tmp_path: Path, server: ImapServer
) -> None:
    stranger = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    server.append([next(iter(corpus())).read_bytes()])
    with pytest.raises(DeliveryError, match="certificate is not trusted"):
        list(
            read_imap(server.host, server.port, server.username, "x", ca_file=stranger, timeout=10)
        )
    code, output = one_line(
        lambda: read_imap(server.host, server.port, server.username, "pw", ca_file=stranger)
    )
    assert code == 3 and output.startswith("Error: IMAP server 127.0.0.1:")
    assert "TLS failed" in output and "MAILER_IMAP_CA_FILE" in output
    assert len(server.folder("INBOX")) == 1  # nothing was read or moved


def test_a_refused_connection_is_one_line_exit_3() -> None:
    with closed_port() as port:
        code, output = one_line(lambda: read_imap("127.0.0.1", port, "u", "secret-pw"))
    assert code == 3 and "cannot connect" in output and "secret-pw" not in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"folder": "Bounces\r\nX"}, "MAILER_IMAP_FOLDER"),
        ({"done_folder": "Tråd"}, "MAILER_IMAP_DONE_FOLDER"),
        ({"done_folder": "inbox"}, "are the same"),
        ({"username": ""}, "MAILER_IMAP_USERNAME"),
        ({"password": "a\nb"}, "MAILER_IMAP_PASSWORD"),
        ({"port": 0}, "MAILER_IMAP_PORT"),
        ({"host": "mail.example.org\r\n"}, "MAILER_IMAP_HOST"),
        ({"ca_file": Path("/nonexistent/ca.pem")}, "MAILER_IMAP_CA_FILE"),
    ],
)
def test_bad_settings_are_refused_before_connecting(options: dict[str, object], named: str) -> None:
    arguments: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 1,
        "username": "u",
        "password": "p",
        **options,
    }
    with pytest.raises(ConfigError, match=named) as caught:
        read_imap(**arguments)  # type: ignore[arg-type]
    assert "\n" not in caught.value.message and "a\nb" not in caught.value.message


def imap_env(server: ImapServer, **extra: str) -> dict[str, str]:
    return {
        "MAILER_SECRET_KEY": SECRET,  # the fixtures' VERP tags are signed with it
        "MAILER_IMAP_HOST": server.host,
        "MAILER_IMAP_PORT": str(server.port),
        "MAILER_IMAP_USERNAME": server.username,
        "MAILER_IMAP_PASSWORD": server.password,
        "MAILER_IMAP_CA_FILE": str(server.ca_file),
        **extra,
    }


def test_mailer_bounces_scan_imap_from_the_command_line_twice(
    sample: Path, server: ImapServer
) -> None:
    from mailer.suppression import Suppression
    from tests.cli import invoke

    server.append(path.read_bytes() for path in corpus())
    first = invoke("bounces", "scan", "--imap", "--json", env=imap_env(server))
    assert first.exit_code == 0, first.output
    assert server.folder("INBOX") == []
    assert len(server.folder("Processed")) == len(EXPECTED)
    # With no ledger to look in, the bounces whose tag names the address are acted on.
    suppressed = Suppression.for_lists_dir(sample / "lists")
    found = {address for address in HARD if suppressed.is_suppressed(address)}
    assert found and len(suppressed) == len(found)
    before = (sample / "lists" / "suppressed.csv").read_bytes()
    # The same mail put back: read again, moved again, nothing changes.
    server.append(server.folder("Processed"))
    again = invoke("bounces", "scan", "--imap", env=imap_env(server))
    assert again.exit_code == 0, again.output
    assert (sample / "lists" / "suppressed.csv").read_bytes() == before
    assert server.password not in first.output + again.output


def test_mailer_bounces_scan_imap_needs_its_settings_and_hides_the_password(
    sample: Path, server: ImapServer
) -> None:
    from tests.cli import error_lines, invoke

    missing = invoke("bounces", "scan", "--imap", env=imap_env(server, MAILER_IMAP_HOST=""))
    assert missing.exit_code == 2
    (line,) = error_lines(missing)
    assert "MAILER_IMAP_HOST" in line
    both = invoke("bounces", "scan", "--imap", "--mbox", "x", env=imap_env(server))
    assert both.exit_code == 2
    wrong = invoke(
        "bounces", "scan", "--imap", env=imap_env(server, MAILER_IMAP_PASSWORD="not-it-at-all")
    )
    assert wrong.exit_code == 2
    assert "not-it-at-all" not in wrong.output and "MAILER_IMAP_USERNAME" in wrong.output
