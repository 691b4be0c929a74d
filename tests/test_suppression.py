"""The global suppression list: its file, its API, and the unsubscribe/resubscribe commands."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailer.errors import InputError
from mailer.models import Recipient
from mailer.subscribers import read_list
from mailer.suppression import Suppression, suppression_path
from tests.cli import invoke
from tests.conftest import REPO
from tests.files import leftovers, rows

DAY = dt.date(2026, 11, 20)


def test_missing_file_is_an_empty_list(tmp_path: Path) -> None:
    suppression = Suppression.for_lists_dir(tmp_path / "lists")
    assert len(suppression) == 0
    assert not suppression.is_suppressed("anyone@example.com")
    assert suppression.path == tmp_path / "lists" / "suppressed.csv"


def test_add_is_case_insensitive_persists_and_logs(tmp_path: Path) -> None:
    path = suppression_path(tmp_path / "lists")
    suppression = Suppression.load(path)
    assert suppression.add("  Bob@Example.NET ", "bounced", date=DAY, note="550 5.1.1")
    assert not suppression.add("bob@example.net", "complaint")  # the first entry stays
    assert suppression.is_suppressed("BOB@example.net")
    assert "bob@EXAMPLE.net" in suppression
    assert path.read_text() == "email,reason,date\nBob@example.net,bounced,2026-11-20\n"

    reloaded = Suppression.load(path)
    entry = reloaded.get("bob@example.net")
    assert entry is not None
    assert (entry.email, entry.reason, entry.date, entry.line) == (
        "Bob@example.net",
        "bounced",
        DAY,
        2,
    )
    log = suppression.log_path.read_text().splitlines()
    assert len(log) == 1
    assert log[0].split("\t")[1:] == ["suppress", "Bob@example.net", "bounced", "550 5.1.1"]
    assert leftovers(path.parent) == []


def test_add_many_writes_once_and_checks_every_address_first(tmp_path: Path) -> None:
    suppression = Suppression.for_lists_dir(tmp_path)
    with pytest.raises(ValueError, match="invalid e-mail address 'bad@'"):
        suppression.add_many([("a@example.com", "bounced"), ("bad@", "bounced")])
    assert not suppression.path.exists()
    with pytest.raises(ValueError, match="reason must be one of"):
        suppression.add("a@example.com", "spam")  # type: ignore[arg-type]
    added = suppression.add_many(
        [("a@example.com", "bounced"), ("A@EXAMPLE.COM", "bounced"), ("b@example.com", "manual")]
    )
    assert added == 2
    assert [r["email"] for r in rows(suppression.path)] == ["a@example.com", "b@example.com"]


def test_remove_returns_the_entry_and_keeps_other_rows_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "suppressed.csv"
    path.write_text(
        "\ufeffemail,reason,date,note\n"
        'keep@example.com,manual,2026-01-02,"asked by phone, twice"\n'
        "\n"
        "Gone@Example.com,unsubscribed,2026-03-04,\n",
        encoding="utf-8",
    )
    suppression = Suppression.load(path)
    entry = suppression.remove("gone@example.com", note="asked again")
    assert entry is not None and entry.reason == "unsubscribed"
    assert suppression.remove("gone@example.com") is None
    assert not suppression.is_suppressed("gone@example.com")
    assert path.read_bytes().decode() == (
        "\ufeffemail,reason,date,note\n"
        'keep@example.com,manual,2026-01-02,"asked by phone, twice"\n'
        "\n"
    )
    log = suppression.log_path.read_text().splitlines()
    assert log[-1].split("\t")[1:] == [
        "resubscribe",
        "Gone@example.com",
        "unsubscribed on 2026-03-04",
        "asked again",
    ]


def test_hand_edited_file_with_bom_blank_lines_and_spaces(tmp_path: Path) -> None:
    path = tmp_path / "suppressed.csv"
    path.write_text(
        "\ufeff Email , Reason \n\n  x@Example.com , COMPLAINT \ny@example.com,,\n",
        encoding="utf-8",
    )
    suppression = Suppression.load(path)
    x, y = suppression.get("x@example.com"), suppression.get("y@example.com")
    assert x is not None and (x.reason, x.date, x.line) == ("complaint", None, 3)
    assert y is not None and y.reason == "manual"
    assert suppression.add("z@example.com", "bounced", date=DAY)
    assert path.read_text(encoding="utf-8-sig").splitlines()[0] == " Email , Reason ,date"
    assert Suppression.load(path).get("z@example.com") is not None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("a@example.com,sometimes,2026-01-01\n", ":2: reason 'sometimes' is not one of"),
        ("a@example.com,manual,01/02/2026\n", ":2: date '01/02/2026' is not YYYY-MM-DD"),
        ("\nnot-an-address,manual,\n", ":3: invalid e-mail address 'not-an-address'"),
        ('"a@example.com,manual,\n', ":2: cannot parse CSV (a quote opened on this line"),
    ],
)
def test_bad_row_names_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "suppressed.csv"
    path.write_text("email,reason,date\n" + body, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        Suppression.load(path)
    assert caught.value.message.startswith(str(path))
    assert message in caught.value.message


def test_read_list_skips_suppressed_and_reports_them(sample: Path) -> None:
    suppression = Suppression.for_lists_dir(sample / "lists")
    suppression.add("carol@example.com", "bounced")
    suppression.add("ALICE@example.org", "complaint")
    skipped: list[Recipient] = []
    mailed = read_list(
        sample / "lists" / "example.csv",
        skip=Suppression.for_lists_dir(sample / "lists").is_suppressed,
        on_skip=skipped.append,
    )
    assert [r.email for r in mailed] == ["bob@example.net", "dmitri@example.org", "zoë@example.com"]
    assert [r.email for r in skipped] == ["alice@example.org", "carol@example.com"]


SUPPRESSOR = """
import pathlib, sys, time
from mailer.suppression import Suppression
path, tag, go = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
suppression = Suppression.load(path)
while not go.exists():
    time.sleep(0.002)
for i in range(30):
    suppression.add(f"{tag}{i}@example.com", "bounced")
"""


def test_two_processes_suppressing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "suppressed.csv"
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SUPPRESSOR, str(path), tag, str(go)],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("one", "two")
    ]
    time.sleep(0.5)
    go.touch()
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
    assert len(Suppression.load(path)) == 60
    assert len(Suppression.load(path).log_path.read_text().splitlines()) == 60


# --- mailer unsubscribe / resubscribe ----------------------------------------------------------


def test_unsubscribe_and_resubscribe_commands(sample: Path) -> None:
    first = invoke("unsubscribe", "Bob@Example.net", "--reason", "complaint")
    assert first.exit_code == 0
    assert first.stdout == (
        "Unsubscribed Bob@example.net (reason: complaint): no digest or forward will reach it. "
        "Recorded in lists/suppressed.csv.\n"
    )
    again = invoke("unsubscribe", "bob@example.net")
    assert again.exit_code == 0
    assert again.stdout.startswith("bob@example.net is already suppressed (complaint on ")

    back = invoke("resubscribe", "BOB@example.net")
    assert back.exit_code == 0
    assert back.stdout.startswith("Resubscribed Bob@example.net: it was suppressed (complaint on")
    assert "Logged in lists/suppressed.log." in back.stdout
    assert not Suppression.for_lists_dir(Path("lists")).is_suppressed("bob@example.net")
    actions = [
        line.split("\t")[1] for line in Path("lists/suppressed.log").read_text().splitlines()
    ]
    assert actions == ["suppress", "resubscribe"]

    nothing = invoke("resubscribe", "bob@example.net")
    assert nothing.exit_code == 2
    assert nothing.stderr == "Error: bob@example.net is not suppressed; nothing changed\n"


def test_unsubscribe_needs_an_address_or_token_and_checks_them(sample: Path) -> None:
    neither = invoke("unsubscribe")
    assert neither.exit_code == 2
    assert neither.stderr == "Error: give the EMAIL to suppress, or --token TOKEN\n"
    bad = invoke("unsubscribe", "bob@@example.net")
    assert bad.exit_code == 2
    assert bad.stderr.startswith("Error: EMAIL: invalid e-mail address 'bob@@example.net'")
    reason = invoke("unsubscribe", "bob@example.net", "--reason", "spam")
    assert reason.exit_code == 2
    assert not (sample / "lists" / "suppressed.csv").exists()


def test_broken_suppression_file_stops_commands_with_one_line(sample: Path) -> None:
    (sample / "lists" / "suppressed.csv").write_text(
        "email,reason,date\nx@example.com,oops,\n", encoding="utf-8"
    )
    before = (sample / "lists" / "example.csv").read_bytes()
    result = invoke("lists", "add", "example", "new@example.com")
    assert result.exit_code == 2
    assert (sample / "lists" / "example.csv").read_bytes() == before
    assert result.stderr == (
        "Error: lists/suppressed.csv:2: reason 'oops' is not one of unsubscribed, bounced, "
        "complaint, manual\n"
    )


def test_a_suppression_file_with_a_column_named_twice_is_an_error(sample: Path) -> None:
    # Which "email" is suppressed would be a guess: a wrong one mails someone who left.
    path = sample / "lists" / "suppressed.csv"
    path.write_text("email,reason,Email\nbob@example.net,manual,carol@example.com\n", "utf-8")
    before = path.read_bytes()
    with pytest.raises(InputError, match=r"suppressed\.csv:1: the header row has the column"):
        Suppression.load(path)
    expected = f"Error: {path.relative_to(sample)}:1: the header row has the column 'email' twice"
    for argv in (
        ["unsubscribe", "dmitri@example.org"],
        ["resubscribe", "bob@example.net"],
        ["lists", "show", "example"],
        ["digest", "--date", "2026-11-27"],
    ):
        result = invoke(*argv)
        assert result.exit_code == 2, (argv, result.output)
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and errors[0].startswith(expected), (argv, result.output)
    assert path.read_bytes() == before
    assert not (sample / "previews").exists()


# --- the journal (many small changes, such as one-click unsubscribes from the web) ---------


def test_journal_changes_are_merged_by_readers_and_folded_by_rewrites(tmp_path: Path) -> None:
    path = tmp_path / "suppressed.csv"
    path.write_text("email,reason,date\nold@example.com,bounced,2026-01-02\n", encoding="utf-8")
    before = path.read_bytes()
    web = Suppression.load(path)
    assert web.add_many([("a@example.com", "unsubscribed"), ("b@example.com", "unsubscribed")],
                        date=DAY, journal=True) == 2  # fmt: skip
    assert web.add("a@example.com", "unsubscribed", journal=True) is False
    assert web.remove("old@example.com", journal=True) is not None
    assert path.read_bytes() == before  # the CSV is untouched
    reader = Suppression.load(path)
    assert sorted(e.email for e in reader) == ["a@example.com", "b@example.com"]
    # a send's refresh sees a later journal line
    web.add("c@example.com", "unsubscribed", journal=True)
    assert reader.refresh(force=True) and reader.is_suppressed("c@example.com")
    # a command that rewrites the CSV folds the journal in, and the journal goes
    assert reader.add("d@example.com", "manual", date=DAY)
    assert not web.journal_path.exists()
    assert path.read_text(encoding="utf-8") == (
        "email,reason,date\n"
        "a@example.com,unsubscribed,2026-11-20\n"
        "b@example.com,unsubscribed,2026-11-20\n"
        "c@example.com,unsubscribed," + dt.date.today().isoformat() + "\n"
        "d@example.com,manual,2026-11-20\n"
    )
    assert web.refresh(force=True) and len(web) == 4 and not web.is_suppressed("old@example.com")


def test_a_torn_last_journal_line_is_ignored_and_cut_off(tmp_path: Path) -> None:
    suppression = Suppression.for_lists_dir(tmp_path)
    suppression.add("a@example.com", "unsubscribed", journal=True)
    journal = suppression.journal_path
    whole = journal.read_bytes()
    torn = whole.replace(b"a@example.com", b"b@example.com")[:-7]  # a crash mid-write
    journal.write_bytes(whole + torn)
    reread = Suppression.for_lists_dir(tmp_path)
    assert len(reread) == 1 and not reread.is_suppressed("b@example.com")
    assert reread.add("c@example.com", "unsubscribed", journal=True)
    assert not journal.read_bytes().startswith(whole + torn)
    assert journal.read_bytes().count(b"\n") == 2
    final = Suppression.for_lists_dir(tmp_path)
    assert sorted(e.email for e in final) == ["a@example.com", "c@example.com"]


def test_a_damaged_journal_line_names_file_and_line(tmp_path: Path) -> None:
    suppression = Suppression.for_lists_dir(tmp_path)
    suppression.add_many([("a@example.com", "unsubscribed"), ("b@example.com", "unsubscribed")],
                         journal=True)  # fmt: skip
    journal = suppression.journal_path
    journal.write_bytes(journal.read_bytes().replace(b"a@example", b"x@example"))
    with pytest.raises(InputError, match=r"suppressed\.journal:1: damaged journal line"):
        Suppression.for_lists_dir(tmp_path)


def test_a_fold_interrupted_before_the_journal_is_deleted_loses_nothing(tmp_path: Path) -> None:
    suppression = Suppression.for_lists_dir(tmp_path)
    suppression.add("keep@example.com", "bounced", date=DAY)
    suppression.add("a@example.com", "unsubscribed", date=DAY, journal=True)
    suppression.remove("keep@example.com", journal=True)
    suppression.add("keep@example.com", "complaint", date=DAY, journal=True)
    journal = suppression.journal_path.read_bytes()
    suppression.compact()
    folded = suppression.path.read_bytes()
    suppression.journal_path.write_bytes(journal)  # as if the fold stopped before the unlink
    again = Suppression.for_lists_dir(tmp_path)
    assert {e.email: e.reason for e in again} == {
        "a@example.com": "unsubscribed",
        "keep@example.com": "complaint",
    }
    again.compact()
    assert suppression.path.read_bytes() == folded


def test_a_long_journal_is_folded_into_the_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mailer.suppression.COMPACT_AFTER", 5)
    suppression = Suppression.for_lists_dir(tmp_path)
    for i in range(7):
        suppression.add(f"r{i}@example.com", "unsubscribed", journal=True)
    assert len(rows(suppression.path)) == 5
    assert suppression.journal_path.read_bytes().count(b"\n") == 2
    assert len(Suppression.for_lists_dir(tmp_path)) == 7


JOURNAL_SUPPRESSOR = SUPPRESSOR.replace('"bounced")', '"bounced", journal=(tag == "one"))')


@pytest.mark.slow
def test_two_processes_one_appending_to_the_journal_lose_nothing(tmp_path: Path) -> None:
    # One writes the journal (as `mailer serve` does), the other rewrites the CSV (as a
    # command does, folding the journal in each time): all 60 are kept, whatever the order.
    path = tmp_path / "suppressed.csv"
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", JOURNAL_SUPPRESSOR, str(path), tag, str(go)],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("one", "two")
    ]
    time.sleep(0.5)
    go.touch()
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
    suppression = Suppression.load(path)
    assert len(suppression) == 60
    suppression.compact()
    assert len(rows(path)) == 60 and not suppression.journal_path.exists()
