"""List management: import, add, remove, export, validate, safe concurrent writes, scale path."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import Result

from mailer.errors import InputError
from mailer.subscribers import add_subscriber, make_recipient, read_list, resolve_list
from mailer.suppression import Suppression
from tests.cli import invoke
from tests.conftest import REPO
from tests.files import leftovers, rows
from tests.process import run_mailer

MESSY = (
    "\ufeffEmail , Name ,Team\n"
    "\n"
    "  New.One@Example.COM  ,  New   One , red\n"
    "new.one@example.com,Second copy,blue\n"
    "ALICE@EXAMPLE.ORG,Alice duplicate of the list,green\n"
    "not-an-address,Nobody,red\n"
    "\n"
    "two@example.net,Two,\n"
    "three@@example.net,Three,red\n"
    ",Empty,red\n"
    "four@example.net,Four,blue\n"
)


# --- import -----------------------------------------------------------------------------


def test_import_messy_file_exact_counts_and_normalised_storage(sample: Path) -> None:
    source = sample / "new.csv"
    source.write_text(MESSY, encoding="utf-8")

    result = invoke("lists", "import", "example", str(source))

    assert result.exit_code == 0, result.output
    assert (
        f"Imported {source} into example (lists/example.csv): 3 added, 2 duplicates, "
        "3 invalid." in result.stdout
    )
    assert f"invalid: {source}:6: invalid e-mail address 'not-an-address'" in result.stdout
    assert f"invalid: {source}:9: invalid e-mail address 'three@@example.net'" in result.stdout
    assert f"invalid: {source}:10: empty e-mail address" in result.stdout
    assert "New columns: team." in result.stdout
    stored = rows(sample / "lists" / "example.csv")
    assert [r["email"] for r in stored[-3:]] == [
        "New.One@example.com",
        "two@example.net",
        "four@example.net",
    ]
    assert stored[-3]["name"] == "New One" and stored[-3]["team"] == "red"
    # the old rows keep their extra column and get an empty new one
    assert stored[0] == {
        "email": "alice@example.org",
        "name": "Alice Martin",
        "city": "Northfield",
        "team": "",
    }
    assert leftovers(sample / "lists") == []


def test_import_creates_a_list_and_a_second_import_adds_only_new(sample: Path) -> None:
    source = sample / "new.csv"
    source.write_text("email,name\nA@x.org,A\nb@x.org,B\n", encoding="utf-8")
    first = invoke("lists", "import", "fresh", str(source))
    assert first.exit_code == 0
    assert "into new list fresh (lists/fresh.csv): 2 added, 0 duplicates, 0 invalid" in (
        first.stdout
    )
    assert (sample / "lists" / "fresh.csv").read_text() == "email,name\nA@x.org,A\nb@x.org,B\n"
    source.write_text("email\na@X.ORG\nc@x.org\n", encoding="utf-8")
    second = invoke("lists", "import", "fresh", str(source))
    assert "1 added, 1 duplicate, 0 invalid" in second.stdout
    assert [r["email"] for r in rows(sample / "lists" / "fresh.csv")] == [
        "A@x.org",
        "b@x.org",
        "c@x.org",
    ]


def test_import_strict_with_an_invalid_row_writes_nothing(sample: Path) -> None:
    before = (sample / "lists" / "example.csv").read_bytes()
    source = sample / "new.csv"
    source.write_text("email\nok@example.com\nbad@\n", encoding="utf-8")
    result = invoke("lists", "import", "example", str(source), "--strict")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {source}:3: invalid e-mail address 'bad@'")
    assert len(result.stderr.strip().splitlines()) == 1
    assert (sample / "lists" / "example.csv").read_bytes() == before
    assert leftovers(sample / "lists") == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"email\nok@example.com\n\xff\xfe@example.com\n", ":3: not valid UTF-8"),
        (b"mail,name\nx@example.com,X\n", ":1: the header row has no 'email' column"),
        (
            b'email\nok@example.com\n"broken,quote\nnext@example.com\n',
            ":3: cannot parse CSV (a quote opened on this line is never closed)",
        ),
        (b'email\n"ok"@example.com\n', ":2: cannot parse CSV (',' expected after '\"')"),
    ],
)
def test_import_of_a_broken_file_names_file_and_line_and_changes_nothing(
    sample: Path, content: bytes, message: str
) -> None:
    before = (sample / "lists" / "example.csv").read_bytes()
    source = sample / "broken.csv"
    source.write_bytes(content)
    result = invoke("lists", "import", "example", str(source))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {source}")
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (sample / "lists" / "example.csv").read_bytes() == before
    assert leftovers(sample / "lists") == []


def test_import_keeps_bom_crlf_quoting_and_unknown_rows_of_the_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lists = tmp_path / "lists"
    lists.mkdir()
    original = (
        '\ufeffemail,name,note\r\n"q@x.org","Quoted, Name","keep ""this"""\r\nbroken-row,,\r\n'
    )
    (lists / "team.csv").write_text(original, encoding="utf-8", newline="")
    source = tmp_path / "in.csv"
    source.write_text("email,name\nnew@x.org,New\n", encoding="utf-8")

    result = invoke("lists", "import", str(lists / "team.csv"), str(source))

    assert result.exit_code == 0, result.output
    text = (lists / "team.csv").read_bytes().decode("utf-8")
    assert text == original + "new@x.org,New,\r\n"


# --- add / remove -------------------------------------------------------------------------


def test_add_case_variant_is_a_duplicate_and_changes_nothing(sample: Path) -> None:
    before = (sample / "lists" / "example.csv").read_bytes()
    result = invoke("lists", "add", "example", "  BOB@Example.NET ")
    assert result.exit_code == 0
    assert result.stdout == (
        "BOB@example.net is already on example (lists/example.csv); nothing changed.\n"
    )
    assert (sample / "lists" / "example.csv").read_bytes() == before


def test_add_appends_normalised_row_with_empty_extras(sample: Path) -> None:
    result = invoke("lists", "add", "example", "Erin@EXAMPLE.com", "--name", "  Erin   Po ")
    assert result.exit_code == 0
    assert "Added Erin@example.com to list example" in result.stdout
    assert rows(sample / "lists" / "example.csv")[-1] == {
        "email": "Erin@example.com",
        "name": "Erin Po",
        "city": "",
    }


def test_add_creates_a_list_and_refuses_bad_names_and_addresses(sample: Path) -> None:
    created = invoke("lists", "add", "weekly-2", "one@example.com")
    assert created.exit_code == 0 and "new list weekly-2" in created.stdout
    assert (sample / "lists" / "weekly-2.csv").read_text() == "email,name\none@example.com,\n"

    bad = invoke("lists", "add", "example", "one@@example.com")
    assert bad.exit_code == 2
    assert bad.stderr.startswith("Error: EMAIL: invalid e-mail address 'one@@example.com'")

    name = invoke("lists", "add", "-x", "one@example.com")
    assert name.exit_code == 2

    newline = invoke("lists", "add", "example", "one@example.com", "--name", "a\x07b")
    assert newline.exit_code == 2 and newline.stderr.startswith("Error: --name: ")


def test_remove_drops_every_case_variant_and_keeps_other_rows_exactly(sample: Path) -> None:
    path = sample / "lists" / "example.csv"
    before = path.read_text(encoding="utf-8")
    result = invoke("lists", "remove", "example", "Alice@Example.org")
    assert result.exit_code == 0
    assert result.stdout == "Removed Alice@example.org from example (lists/example.csv) (2 rows).\n"
    after = path.read_text(encoding="utf-8")
    kept = [line for line in before.splitlines(True) if "alice@" not in line.lower()]
    assert after == "".join(kept)

    again = invoke("lists", "remove", "example", "alice@example.org")
    assert again.exit_code == 2
    assert again.stderr == (
        "Error: alice@example.org is not on example (lists/example.csv); nothing changed\n"
    )


# --- suppressed addresses stay suppressed ------------------------------------------------------


def test_suppressed_address_added_or_reimported_stays_suppressed(sample: Path) -> None:
    assert invoke("unsubscribe", "dmitri@example.org").exit_code == 0
    assert invoke("lists", "remove", "example", "dmitri@example.org").exit_code == 0

    added = invoke("lists", "add", "example", "Dmitri@Example.org")
    assert added.exit_code == 0
    assert "Note: dmitri@example.org is suppressed (unsubscribed on" in added.stdout
    assert "stays suppressed" in added.stdout

    source = sample / "again.csv"
    source.write_text("email\ndmitri@example.org\nnew@example.org\n", encoding="utf-8")
    invoke("lists", "remove", "example", "dmitri@example.org")
    imported = invoke("lists", "import", "example", str(source))
    assert "2 added, 0 duplicates, 0 invalid" in imported.stdout
    assert "Note: 1 added address is suppressed and will stay suppressed" in imported.stdout
    assert "dmitri@example.org (unsubscribed on" in imported.stdout

    suppression = Suppression.for_lists_dir(sample / "lists")
    assert suppression.is_suppressed("dmitri@example.org")
    mailed = [r.email for r in read_list(resolve_list("example", Path("lists")))]
    assert "dmitri@example.org" in mailed  # on the list...
    kept = read_list(Path("lists/example.csv"), skip=suppression.is_suppressed)
    assert "dmitri@example.org" not in [r.email for r in kept]  # ...but never mailed


# --- show / export / overview ---------------------------------------------------------------


def test_export_csv_and_json(sample: Path) -> None:
    invoke("unsubscribe", "bob@example.net")
    as_csv = invoke("lists", "export", "example")
    assert as_csv.exit_code == 0
    assert as_csv.stdout.splitlines() == [
        "email,name,city",
        "alice@example.org,Alice Martin,Northfield",
        "carol@example.com,,Hartley",
        "dmitri@example.org,Dmitri Ivanov,Riverside",
        "zoë@example.com,Zoë Durand,Mill Bridge",
    ]
    assert "Exported 4 subscribers from lists/example.csv (1 suppressed left out" in (as_csv.stderr)

    as_json = invoke("lists", "export", "example", "--format", "json", "--include-suppressed")
    records = json.loads(as_json.stdout)
    assert len(records) == 5
    assert records[1] == {"email": "bob@example.net", "name": "Bob Chen", "city": "Riverside"}
    assert records[4]["email"] == "zoë@example.com"

    out = sample / "out.json"
    to_file = invoke("lists", "export", "example", "--format", "json", "-o", str(out))
    assert to_file.stdout == ""
    exported = json.loads(out.read_text(encoding="utf-8"))
    assert [r["email"] for r in exported] == [
        "alice@example.org",
        "carol@example.com",
        "dmitri@example.org",
        "zoë@example.com",
    ]


def test_export_of_an_empty_list_is_valid_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "empty.csv"
    path.write_text("email,name\n", encoding="utf-8")
    result = invoke("lists", "export", str(path), "--format", "json")
    assert json.loads(result.stdout) == []


def test_show_marks_suppressed_and_warns_about_duplicates(sample: Path) -> None:
    invoke("unsubscribe", "carol@example.com", "--reason", "bounced")
    result = invoke("lists", "show", "example")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["2", "alice@example.org", "Alice", "Martin", "city=Northfield"]
    assert "carol@example.com  -  city=Hartley  [suppressed: bounced on" in lines[2]
    assert lines[-1] == ("lists/example.csv: 5 subscribers (1 suppressed), 1 duplicate, 0 invalid")
    assert "lists/example.csv:5: duplicate of an earlier row (ALICE@example.org)" in (result.stderr)


def test_overview_lists_every_list_but_not_the_suppression_file(sample: Path) -> None:
    (sample / "lists" / "b.csv").write_text("email\nx@example.com\nbad\n", encoding="utf-8")
    invoke("unsubscribe", "alice@example.org")
    result = invoke("lists")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "LIST",
        "SUBSCRIBERS",
        "SUPPRESSED",
        "DUPLICATES",
        "INVALID",
        "FILE",
    ]
    assert lines[1].split() == ["b", "1", "0", "0", "1", "lists/b.csv"]
    assert lines[2].split() == ["example", "5", "1", "1", "0", "lists/example.csv"]
    assert not any(line.startswith("suppressed") for line in lines)
    assert lines[-1] == (
        "Suppression list: 1 address (lists/suppressed.csv); it is not a subscriber list."
    )
    shown = invoke("lists", "show", "suppressed")
    assert shown.exit_code == 2
    assert "this is the suppression list, not a subscriber list" in shown.stderr
    with pytest.raises(InputError):
        resolve_list("suppressed", Path("lists"))  # so `digest --list suppressed` refuses too


def test_overview_of_a_missing_folder(tmp_path: Path) -> None:
    result = invoke("lists", env={"MAILER_LISTS_DIR": str(tmp_path / "none")})
    assert result.exit_code == 0
    assert result.stdout.startswith(f"No lists in {tmp_path / 'none'}/")


# --- validate ------------------------------------------------------------------------------


def test_validate_exit_codes(sample: Path) -> None:
    ok = invoke("lists", "validate", "example")
    assert ok.exit_code == 0
    assert ok.stdout == (
        "lists/example.csv: 5 subscribers (0 suppressed), 1 duplicate, 0 invalid: OK.\n"
    )

    bad = sample / "bad.csv"
    bad.write_text("email,name\nok@example.com,\nnope,\n\nx@y.z@w,\n", encoding="utf-8")
    invalid = invoke("lists", "validate", str(bad))
    assert invalid.exit_code == 1
    out = invalid.stdout.splitlines()
    assert out[0].startswith(f"{bad}:3: invalid e-mail address 'nope'")
    assert out[1].startswith(f"{bad}:5: invalid e-mail address 'x@y.z@w'")
    assert out[2] == f"{bad}: 1 subscriber (0 suppressed), 0 duplicates, 2 invalid: 2 invalid rows."

    multiline = sample / "multi.csv"
    multiline.write_text('email,name\n"a@example.com","Two\nLines"\nb@example.com,B\n')
    spanning = invoke("lists", "validate", str(multiline))
    assert spanning.exit_code == 1
    assert spanning.stdout.startswith(f"{multiline}:2: name contains a line break")

    missing = invoke("lists", "validate", "nosuch")
    assert missing.exit_code == 2
    assert missing.stderr == "Error: lists/nosuch.csv: list not found\n"

    (sample / "latin1.csv").write_bytes("email,name\nz@example.com,Zo\xeb\n".encode("latin-1"))
    unreadable = invoke("lists", "validate", "latin1.csv")
    assert unreadable.exit_code == 2
    assert unreadable.stderr.startswith("Error: latin1.csv:2: not valid UTF-8")


def test_validate_and_import_in_a_real_process(sample: Path) -> None:
    source = sample / "new.csv"
    source.write_text(MESSY, encoding="utf-8")
    imported = run_mailer("lists", "import", "example", "new.csv", cwd=sample)
    assert imported.returncode == 0, imported.stderr
    assert "3 added, 2 duplicates, 3 invalid." in imported.stdout
    checked = run_mailer("lists", "validate", "example", cwd=sample)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "lists/example.csv: 8 subscribers (0 suppressed), 1 duplicate, 0 invalid: OK." in (
        checked.stdout
    )
    failing = run_mailer("lists", "validate", "new.csv", cwd=sample)
    assert failing.returncode == 1
    assert "Traceback" not in failing.stderr
    assert failing.stdout.count("new.csv:") == 4  # three rows and the summary


# --- the documented commands run ----------------------------------------------------------


def test_documented_list_commands_run(sample: Path) -> None:
    """The ``sh`` block under "List commands" (README.md once merged, else docs/lists.md)."""
    for doc in (REPO / "README.md", REPO / "docs" / "lists.md"):
        found = re.search(r"### List commands.*?```sh\n(.+?)\n```", doc.read_text(), re.S)
        if found:
            break
    assert found is not None
    commands = found.group(1).splitlines()
    assert len(commands) >= 4
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "mailer"
        result = invoke(*argv[1:])
        assert result.exit_code == 0, (command, result.output)
    assert rows(sample / "lists" / "example.csv")[-1]["email"] == "zoë@example.com"


# --- concurrent writers ------------------------------------------------------------------------

ADDER = """
import pathlib, sys, time
from mailer.subscribers import add_subscriber, make_recipient
path, tag, go = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
while not go.exists():
    time.sleep(0.002)
for i in range(60):
    add_subscriber(path, make_recipient(f"{tag}{i}@example.com", f"{tag} {i}"))
"""


def test_two_processes_adding_60_each_lose_no_rows(sample: Path) -> None:
    path = sample / "lists" / "example.csv"
    go = sample / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ADDER, str(path), tag, str(go)],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("left", "right")
    ]
    time.sleep(0.5)  # both are importing and then waiting for the same start signal
    go.touch()
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr

    emails = [r["email"] for r in rows(path)]
    added = {e for e in emails if e.startswith(("left", "right"))}
    assert len(added) == 120
    assert added == {f"{t}{i}@example.com" for t in ("left", "right") for i in range(60)}
    assert len(emails) == 6 + 120  # the original six rows are all still there
    assert leftovers(path.parent) == []


def test_library_add_reports_created_added_and_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "lists" / "x.csv"
    first = add_subscriber(path, make_recipient("a@example.com", "A", {"city": "Rome"}))
    assert (first.created, first.added, first.duplicates) == (True, 1, 0)
    again = add_subscriber(path, make_recipient("A@EXAMPLE.COM"))
    assert (again.created, again.added, again.duplicates) == (False, 0, 1)
    assert path.read_text() == "email,name,city\na@example.com,A,Rome\n"


# --- a column named twice -----------------------------------------------------------------------

DUPLICATED = "email,name,email\nalice@example.org,Alice,mallory@evil.example\n"


def one_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    "header",
    ["email,name,email", "Email,name, EMAIL ", "email,name,\ufeffemail", "email,name,city,City"],
)
def test_a_column_named_twice_is_an_error_naming_file_and_line_1(sample: Path, header: str) -> None:
    path = sample / "lists" / "dup.csv"
    path.write_text(f"{header}\nalice@example.org,Alice,mallory@evil.example,x\n", "utf-8")
    before = path.read_bytes()
    column = "city" if "city" in header else "email"
    expected = f"Error: lists/dup.csv:1: the header row has the column '{column}' twice"
    for argv in (
        ["lists", "show", "dup"],
        ["lists", "export", "dup"],
        ["lists", "validate", "dup"],
        ["lists", "add", "dup", "new@example.org"],
        ["lists", "remove", "dup", "alice@example.org"],
        ["digest", "--date", "2026-11-27", "--list", "dup"],
        ["digest", "--date", "2026-11-27", "--list", "lists/dup.csv"],
    ):
        assert one_error(invoke(*argv)).startswith(expected), argv
    assert path.read_bytes() == before
    assert not (sample / "previews").exists()
    # Every list is scanned by `mailer lists`: the broken one is named, the others shown.
    overview = invoke("lists")
    assert overview.exit_code == 2 and expected in overview.stderr
    assert "example" in overview.stdout


def test_an_import_file_with_a_column_named_twice_changes_nothing(sample: Path) -> None:
    source = sample / "in.csv"
    source.write_text(DUPLICATED, encoding="utf-8")
    before = (sample / "lists" / "example.csv").read_bytes()
    line = one_error(invoke("lists", "import", "example", str(source)))
    assert line.startswith(f"Error: {source}:1: the header row has the column 'email' twice")
    assert (sample / "lists" / "example.csv").read_bytes() == before
    assert leftovers(sample / "lists") == []


def test_a_header_after_blank_lines_is_named_by_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    path.write_text("\n\n" + DUPLICATED, encoding="utf-8")
    with pytest.raises(InputError, match=r"late\.csv:3: the header row has the column"):
        list(read_list(path))


def test_empty_column_names_may_repeat(tmp_path: Path) -> None:
    # Spreadsheets export trailing empty columns; they hold nothing a reader would take.
    path = tmp_path / "sheet.csv"
    path.write_text("email,name,,\nalice@example.org,Alice,,\n", encoding="utf-8")
    assert [r.email for r in read_list(path)] == ["alice@example.org"]


# --- list names ---------------------------------------------------------------------------------

BAD_NAMES = [
    "../evil",
    "/tmp/evil",
    "sub/evil",
    "..",
    ".hidden",
    "a b",
    "back\\slash",
    "tab\tname",
    "new\nline",
    "a" * 65,
    "",
    "zoë",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_list_name_must_be_a_plain_name_for_every_command(
    sample: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = sample / "work"  # so that "../evil" would land in the sample folder
    (work / "lists").mkdir(parents=True)
    (work / "articles").symlink_to(sample / "articles")
    source = work / "in.csv"
    source.write_text("email\nnew@example.org\n", encoding="utf-8")
    env = {"MAILER_LISTS_DIR": str(work / "lists"), "MAILER_ARTICLES_DIR": str(work / "articles")}
    before = sorted(p.relative_to(sample) for p in sample.rglob("*"))
    monkeypatch.chdir(work)
    for argv in (
        ["lists", "add", name, "x@example.com"],
        ["lists", "import", name, str(source)],
        ["lists", "remove", name, "x@example.com"],
        ["lists", "show", name],
        ["lists", "export", name],
        ["lists", "validate", name],
        ["digest", "--date", "2026-11-27", "--list", name],
    ):
        if argv[0] == "digest" and not name:
            continue  # an empty --list means the default list
        line = one_error(invoke(*argv, env=env))
        assert line.startswith("Error: list name "), (argv, line)
        assert "letters, digits" in line
        assert "\n" not in line and "\t" not in line
    assert sorted(p.relative_to(sample) for p in sample.rglob("*")) == before


def test_add_with_a_path_like_name_writes_nothing_outside_lists(sample: Path) -> None:
    result = invoke("lists", "add", "../evil", "x@example.com")
    assert one_error(result).startswith("Error: list name '../evil': a list name is 1 to 64")
    assert not (sample.parent / "evil").exists() and not (sample.parent / "evil.csv").exists()


def test_plain_names_up_to_64_characters_are_fine(sample: Path) -> None:
    for name in ("a" * 64, "Weekly_2026.v2-final", "_drafts", "7"):
        result = invoke("lists", "add", name, "x@example.com")
        assert result.exit_code == 0, result.output
        assert (sample / "lists" / f"{name}.csv").is_file()
        assert invoke("lists", "show", name).exit_code == 0


def test_a_file_named_like_a_list_in_the_working_folder_is_not_taken_for_it(
    sample: Path,
) -> None:
    (sample / "notes").write_text("not a list\n", encoding="utf-8")
    result = invoke("lists", "add", "notes", "x@example.com")
    assert result.exit_code == 0, result.output
    assert (sample / "notes").read_text(encoding="utf-8") == "not a list\n"
    assert rows(sample / "lists" / "notes.csv") == [{"email": "x@example.com", "name": ""}]


def test_an_existing_csv_file_may_still_be_given_by_its_path(sample: Path) -> None:
    other = sample / "elsewhere" / "Team list 2026.csv"
    other.parent.mkdir()
    other.write_text("email,name\nteam@example.org,Team\n", encoding="utf-8")
    for argv in (
        ["lists", "show", str(other)],
        ["lists", "validate", str(other)],
        ["lists", "export", str(other)],
        ["lists", "add", str(other), "two@example.org"],
        ["lists", "remove", str(other), "two@example.org"],
        ["digest", "--date", "2026-11-27", "--list", str(other)],
    ):
        result = invoke(*argv)
        assert result.exit_code == 0, (argv, result.output)
    assert resolve_list(str(other), sample / "lists") == other
    eml = sorted((sample / "previews" / "digest-2026-11-27").glob("*.eml"))
    assert len(eml) == 1 and eml[0].name.endswith("team_at_example.org.eml")


def test_a_csv_path_that_does_not_exist_is_never_created(sample: Path) -> None:
    (sample / "in.csv").write_text("email\nx@example.com\n", encoding="utf-8")
    for argv in (
        ["lists", "add", "new.csv", "x@example.com"],
        ["lists", "add", "../evil.csv", "x@example.com"],
        ["lists", "import", str(sample / "abs" / "evil.csv"), str(sample / "in.csv")],
    ):
        line = one_error(invoke(*argv))
        assert "list not found" in line and "plain list name" in line, line
    assert not (sample / "new.csv").exists() and not (sample.parent / "evil.csv").exists()
    assert not (sample / "abs").exists()


def test_a_csv_path_whose_name_is_too_long_for_a_token_is_refused(sample: Path) -> None:
    other = sample / ("n" * 65 + ".csv")
    other.write_text("email\nx@example.org\n", encoding="utf-8")
    line = one_error(invoke("digest", "--date", "2026-11-27", "--list", str(other)))
    assert "at most 64 bytes" in line
