"""Preview folders: only a new folder or an earlier preview is written, replaced whole, and a
full or read-only disk is one ``Error:`` line that leaves nothing behind (on a real tmpfs)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mailer.delivery import deliver
from mailer.models import Outgoing, Recipient
from mailer.transports import files
from mailer.transports.files import MARKER, FilesTransport
from tests.cli import invoke, refused
from tests.conftest import REPO
from tests.process import run_mailer

DATE = "2026-11-27"
SLUG = "2026-11-27-river-path-reopens"
FORWARD = ("forward", SLUG, "--to", "a@example.net", "--sender", "alice@example.org")
DIGEST = ("digest", "--date", DATE)


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (hidden ones too), with a file's bytes, a folder's None."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
        if "articles" not in p.parts and "lists" not in p.parts
    }


def hidden(folder: Path) -> list[str]:
    """Temporary folders or ``.old`` leftovers: any dot-name but the marker."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != MARKER]


# --- what may be written --------------------------------------------------------------------


def test_a_folder_of_the_users_is_refused_and_kept(sample: Path) -> None:
    keep = sample / "keep"
    (keep / "photos").mkdir(parents=True)
    (keep / "thesis.txt").write_text("four years of work", encoding="utf-8")
    (keep / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    before = tree(sample)
    line = refused(invoke(*FORWARD, "--out", "keep"))
    assert line.startswith("Error: keep: exists and is not a preview folder")
    assert MARKER in line
    assert tree(sample) == before


def test_an_existing_file_is_refused_and_kept(sample: Path) -> None:
    (sample / "notes.txt").write_text("mine", encoding="utf-8")
    before = tree(sample)
    line = refused(invoke(*FORWARD, "--out", "notes.txt"))
    assert line == "Error: notes.txt: exists and is not a folder; refusing to replace it"
    assert tree(sample) == before


@pytest.mark.parametrize(("out", "what"), [(".", "is"), ("", "is"), ("..", "holds")])
def test_the_current_folder_and_its_parents_are_refused(sample: Path, out: str, what: str) -> None:
    before, around = tree(sample), sorted(p.name for p in sample.parent.iterdir())
    line = refused(invoke(*FORWARD, "--out", out))
    where = sample if what == "is" else sample.parent
    assert f"({where}): {what} the current directory" in line
    assert tree(sample) == before  # no ``..old.*`` folder, nothing at all
    assert sorted(p.name for p in sample.parent.iterdir()) == around
    line = refused(invoke(*FORWARD, "--out", str(where)))
    assert line.startswith(f"Error: {where}: {what} the current directory")


def test_a_folder_holding_the_articles_is_refused_even_if_marked(sample: Path) -> None:
    site = sample / "site"
    site.mkdir()
    (sample / "articles").rename(site / "articles")
    env = {"MAILER_ARTICLES_DIR": str(site / "articles")}
    before = tree(site)
    assert "site: exists and is not a preview folder" in refused(
        invoke(*FORWARD, "--out", "site", env=env)
    )
    (site / MARKER).write_text("copied by hand", encoding="utf-8")
    line = refused(invoke(*FORWARD, "--out", "site", env=env))
    assert line == (
        "Error: site: holds a folder (articles/) that no preview wrote; refusing to replace it"
    )
    assert len(list((site / "articles").iterdir())) > 3
    assert not hidden(sample)
    assert tree(site) == {**before, MARKER: b"copied by hand"}


def test_digest_refuses_a_file_or_a_users_folder_at_its_issue_path(sample: Path) -> None:
    out = sample / "out"
    out.mkdir()
    (out / f"digest-{DATE}").write_text("not a preview", encoding="utf-8")
    before = tree(sample)
    line = refused(invoke(*DIGEST, "--out", "out"))
    assert line == f"Error: out/digest-{DATE}: exists and is not a folder; refusing to replace it"
    (out / f"digest-{DATE}").unlink()
    (out / f"digest-{DATE}").mkdir()
    (out / f"digest-{DATE}" / "draft.txt").write_text("mine", encoding="utf-8")
    before = tree(sample)
    assert f"out/digest-{DATE}: exists and is not a preview folder" in refused(
        invoke(*DIGEST, "--out", "out")
    )
    assert tree(sample) == before


def test_a_name_too_long_is_one_error_line(sample: Path) -> None:
    line = refused(invoke(*FORWARD, "--out", "x" * 300))
    assert line.endswith("cannot use as a preview folder (File name too long)")
    long_ok = "y" * 250  # the longest names still leave room for the temporary folder
    assert invoke(*FORWARD, "--out", long_ok).exit_code == 0
    assert (sample / long_ok / MARKER).is_file()
    assert not hidden(sample)


# --- replacing an earlier preview -----------------------------------------------------------


def test_a_preview_is_marked_and_replaced_whole_by_the_next(sample: Path) -> None:
    assert invoke(*FORWARD, "--out", "sub/shared").exit_code == 0
    folder = sample / "sub" / "shared"
    assert "written by mailer" in (folder / MARKER).read_text(encoding="utf-8")
    (folder / "stale.eml").write_bytes(b"old")
    assert invoke(*FORWARD, "--out", "sub/../sub/shared").exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        MARKER,
        "000001-a_at_example.net.eml",
        "forward.html",
        "forward.txt",
    ]
    assert not hidden(sample / "sub") and not hidden(sample)


def test_a_symlinked_preview_is_replaced_where_it_really_is(sample: Path) -> None:
    (sample / "real").mkdir()
    (sample / "latest").symlink_to(Path("real") / "preview")  # dangling at first
    for _ in range(2):
        result = invoke(*FORWARD, "--out", "latest")
        assert result.exit_code == 0, result.output
        (sample / "real" / "preview" / "stale.eml").write_bytes(b"old")
    assert (sample / "latest").is_symlink()
    assert (sample / "latest" / "forward.html").is_file()
    assert len(list((sample / "real" / "preview").iterdir())) == 5
    assert not hidden(sample) and not hidden(sample / "real")
    (sample / "mine").mkdir()
    (sample / "latest").unlink()
    (sample / "latest").symlink_to("mine")
    line = refused(invoke(*FORWARD, "--out", "latest"))
    assert line.startswith(f"Error: latest ({sample / 'mine'}): exists and is not a preview")


def write_preview(folder: Path, count: int = 3) -> None:
    """The files transport on its own, through the delivery engine, as the CLI drives it."""
    transport = FilesTransport(folder, extras={"preview.txt": "first recipient"})
    messages = [
        Outgoing(
            index=i,
            recipient=Recipient(email=f"r{i}@example.org"),
            sender="news@example.com",
            message_id=f"<{i}@example.com>",
            data=b"Subject: hi\r\n\r\nHello.\r\n",
        )
        for i in range(1, count + 1)
    ]

    async def drain() -> None:
        async for _ in deliver(transport, messages):
            pass

    asyncio.run(drain())


WATCHER = """
import os, sys
marker, stop = sys.argv[1:]
seen = missed = 0
print("ready", flush=True)
while not os.path.exists(stop):
    if os.path.isfile(marker):
        seen += 1
    else:
        missed += 1
print(seen, missed)
"""


def test_replacing_never_leaves_a_moment_without_a_preview(tmp_path: Path) -> None:
    folder = tmp_path / "preview"
    write_preview(folder)
    stop = tmp_path / "stop"
    with subprocess.Popen(
        [sys.executable, "-c", WATCHER, str(folder / MARKER), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    ) as watcher:
        assert watcher.stdout is not None
        assert watcher.stdout.readline() == "ready\n"
        for count in range(1, 41):
            write_preview(folder, count)
        stop.touch()
        seen, missed = map(int, watcher.stdout.read().split())
    assert (seen, missed) == (seen, 0) and seen > 0
    assert len(list(folder.glob("*.eml"))) == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preview", "stop"]


def test_without_an_atomic_swap_the_fallback_leaves_no_debris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "_exchange", lambda first, second: False)
    folder = tmp_path / "preview"
    write_preview(folder, 2)
    write_preview(folder, 1)
    assert sorted(p.name for p in folder.iterdir()) == [
        MARKER,
        "000001-r1_at_example.org.eml",
        "preview.txt",
    ]
    assert os.listdir(tmp_path) == ["preview"]


# --- a full or read-only disk, for real -----------------------------------------------------

DiskCheck = Callable[[Path], None]


@pytest.fixture
def on_tiny_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., None]:
    """Run a check with a small tmpfs mounted at ``tmp_path/disk``. As root (CI) it is
    mounted here; otherwise this test runs again in a private user and mount namespace,
    where it is root and its mount is seen by no one else."""

    def run(check: DiskCheck, *, size: str, readonly: bool = False) -> None:
        if os.geteuid() != 0:
            namespace = ["unshare", "--user", "--map-root-user", "--mount"]
            pytest_args = ["-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "ns")]
            again = subprocess.run(
                [*namespace, sys.executable, "-m", "pytest", *pytest_args, request.node.nodeid],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert again.returncode == 0, again.stdout + again.stderr
            return
        disk = tmp_path / "disk"
        disk.mkdir()
        options = f"size={size},mode=0755" + (",ro" if readonly else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)], check=True)
        try:
            check(disk)
        finally:
            subprocess.run(["umount", "--lazy", str(disk)], check=True)

    return run


HOW = [pytest.param("subprocess", marks=pytest.mark.slow), "in-process"]


def run_cli(how: str, cwd: Path, *args: str) -> tuple[int, str]:
    """Exit code and output (stdout and stderr) of the CLI, as a subprocess or in process."""
    if how == "subprocess":
        done = run_mailer(*args, cwd=cwd)
        assert "Traceback" not in done.stderr
        return done.returncode, done.stdout + done.stderr
    result = invoke(*args)
    return result.exit_code, result.output


def one_error(output: str) -> str:
    (line,) = [line for line in output.splitlines() if line.startswith("Error:")]
    assert "Traceback" not in output and len(output.splitlines()) == 1, output
    return line


def free_bytes(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


@pytest.mark.parametrize("how", HOW)
def test_a_full_disk_is_one_error_and_leaves_nothing(
    sample: Path, on_tiny_disk: Callable[..., None], how: str
) -> None:
    def check(disk: Path) -> None:
        code, output = run_cli(how, sample, *DIGEST, "--out", str(disk / "x"))
        assert code == 2, output
        line = one_error(output)
        assert line == f"Error: {disk}/x/digest-{DATE}: cannot write the previews " + (
            "(No space left on device)"
        )
        assert os.listdir(disk) == []  # no preview, no temporary folder, no parent made

    on_tiny_disk(check, size="32k")


@pytest.mark.parametrize("how", HOW)
def test_a_full_disk_keeps_the_earlier_complete_preview(
    sample: Path, on_tiny_disk: Callable[..., None], how: str
) -> None:
    def check(disk: Path) -> None:
        out = disk / "previews"
        code, output = run_cli(how, sample, *DIGEST, "--limit", "1", "--out", str(out))
        assert code == 0, output
        folder = out / f"digest-{DATE}"
        earlier = tree(folder)
        assert sorted(earlier) == [
            MARKER,
            "000001-alice_at_example.org.eml",
            "digest.html",
            "digest.txt",
            "media",  # the market hall's picture, which digest.html shows
            "media/images",
            "media/images/market-hall.jpg",
        ]
        (disk / "filler").write_bytes(b"\0" * (free_bytes(disk) - 20 * 1024))
        code, output = run_cli(how, sample, *DIGEST, "--out", str(out))
        assert code == 2, output
        assert "(No space left on device)" in one_error(output)
        assert tree(folder) == earlier
        assert os.listdir(out) == [f"digest-{DATE}"]

    on_tiny_disk(check, size="128k")


def test_a_disk_filling_up_at_the_end_is_one_error_too(
    sample: Path, on_tiny_disk: Callable[..., None]
) -> None:
    # 16k: the marker and the message fit, forward.html does not (written when finishing).
    def check(disk: Path) -> None:
        line = refused(invoke(*FORWARD, "--out", str(disk / "shared")))
        assert line == f"Error: {disk}/shared: cannot write the previews (No space left on device)"
        assert os.listdir(disk) == []

    on_tiny_disk(check, size="16k")


@pytest.mark.slow
def test_a_read_only_disk_is_one_error(sample: Path, on_tiny_disk: Callable[..., None]) -> None:
    def check(disk: Path) -> None:
        code, output = run_cli("subprocess", sample, *FORWARD, "--out", str(disk / "shared"))
        assert code == 2, output
        assert one_error(output) == (
            f"Error: {disk}/shared: cannot create the preview folder (Read-only file system)"
        )

    on_tiny_disk(check, size="16k", readonly=True)
