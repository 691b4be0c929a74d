"""Symlinks and special files in the articles folder: what leads outside is never read."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mailer.articles import article_files, is_inside, load_article, load_articles
from mailer.errors import InputError

ARTICLE = "---\ntitle: {title}\ndate: 2026-11-27\nurl: https://example.com/{slug}\n---\n\nBody.\n"
SECRET = "Title: Secret\nURL: https://example.com/secret\n\nroot:x:0:0:root:/root:/bin/bash\n"


def article(folder: Path, name: str, title: str = "A story") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(ARTICLE.format(title=title, slug=path.stem), encoding="utf-8")
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the articles folder that would load as an article if it were read."""
    folder = tmp_path / "outside"
    folder.mkdir()
    secret = folder / "secret.txt"
    secret.write_text(SECRET, encoding="utf-8")
    return secret


def load_with_skips(folder: Path) -> tuple[list[str], list[tuple[str, str]]]:
    skipped: list[tuple[Path, str]] = []
    articles = load_articles(folder, on_skip=lambda path, reason: skipped.append((path, reason)))
    return (
        [a.title for a in articles],
        [(str(path.relative_to(folder)), reason) for path, reason in skipped],
    )


def test_a_symlink_to_a_file_outside_is_skipped_and_reported(tmp_path: Path, outside: Path) -> None:
    folder = tmp_path / "articles"
    article(folder, "story.md")
    (folder / "passwd.txt").symlink_to(outside)
    titles, skipped = load_with_skips(folder)
    assert titles == ["A story"]
    assert skipped == [("passwd.txt", "a symlink that leads outside the articles folder")]
    # Without on_skip it is left out all the same.
    assert [a.title for a in load_articles(folder)] == ["A story"]


@pytest.mark.skipif(not Path("/etc/passwd").is_file(), reason="no /etc/passwd here")
def test_a_symlink_to_etc_passwd_is_never_read(tmp_path: Path) -> None:
    folder = tmp_path / "articles"
    article(folder, "story.md")
    (folder / "passwd.txt").symlink_to("/etc/passwd")
    titles, skipped = load_with_skips(folder)
    assert titles == ["A story"] and [name for name, _ in skipped] == ["passwd.txt"]
    with pytest.raises(InputError, match="leads outside the articles folder"):
        load_article(folder / "passwd.txt", folder=folder)


def test_a_symlinked_folder_outside_is_skipped_and_reported(tmp_path: Path, outside: Path) -> None:
    folder = tmp_path / "articles"
    article(folder, "story.md")
    (folder / "elsewhere").symlink_to(outside.parent, target_is_directory=True)
    titles, skipped = load_with_skips(folder)
    assert titles == ["A story"]
    assert skipped == [("elsewhere", "a symlink that leads outside the articles folder")]


def test_a_relative_symlink_climbing_out_is_skipped(tmp_path: Path, outside: Path) -> None:
    folder = tmp_path / "articles"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "up.txt").symlink_to(Path("..") / ".." / "outside" / "secret.txt")
    titles, skipped = load_with_skips(folder)
    assert titles == [] and [name for name, _ in skipped] == ["sub/up.txt"]


def test_load_article_with_a_folder_refuses_a_path_that_leads_outside(
    tmp_path: Path, outside: Path
) -> None:
    folder = tmp_path / "articles"
    inside = article(folder, "story.md")
    link = folder / "secret.txt"
    link.symlink_to(outside)
    with pytest.raises(InputError) as caught:
        load_article(link, folder=folder)
    assert str(caught.value) == f"{link}: leads outside the articles folder {folder}; not read"
    assert load_article(inside, folder=folder).title == "A story"
    assert load_article(link).title == "Secret"  # no folder given: the caller vouches for it
    assert is_inside(inside, folder) and not is_inside(link, folder)
    assert not is_inside(outside, folder)


def test_symlinks_inside_the_folder_are_followed_and_each_file_loads_once(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "articles"
    article(folder / "2026", "river.md", "River")
    (folder / "current").symlink_to(folder / "2026", target_is_directory=True)
    (folder / "a-link.md").symlink_to(Path("2026") / "river.md")
    article(folder / "_drafts", "draft.md", "Draft")
    (folder / "promoted.md").symlink_to(folder / "_drafts" / "draft.md")
    titles, skipped = load_with_skips(folder)
    assert sorted(titles) == ["Draft", "River"] and skipped == []
    # The file keeps its own path, not the symlink's, where it has one.
    assert [p.relative_to(folder).as_posix() for p in article_files(folder)] == [
        "2026/river.md",
        "promoted.md",
    ]


def test_symlink_loops_and_broken_symlinks_do_not_hang(tmp_path: Path) -> None:
    folder = tmp_path / "articles"
    article(folder, "story.md")
    (folder / "self").symlink_to(".", target_is_directory=True)
    (folder / "sub").mkdir()
    (folder / "sub" / "parent").symlink_to("..", target_is_directory=True)
    (folder / "ping.md").symlink_to("pong.md")
    (folder / "pong.md").symlink_to("ping.md")
    (folder / "gone.txt").symlink_to("nowhere.txt")
    started = time.monotonic()
    titles, skipped = load_with_skips(folder)
    assert time.monotonic() - started < 5
    assert titles == ["A story"]
    assert sorted(skipped) == [
        ("gone.txt", "a broken symlink, or a symlink loop"),
        ("ping.md", "a broken symlink, or a symlink loop"),
        ("pong.md", "a broken symlink, or a symlink loop"),
    ]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_is_skipped_and_never_opened_for_a_blocking_read(tmp_path: Path) -> None:
    folder = tmp_path / "articles"
    article(folder, "story.md")
    os.mkfifo(folder / "pipe.md")
    titles, skipped = load_with_skips(folder)
    assert titles == ["A story"] and skipped == [("pipe.md", "not a regular file")]
    with pytest.raises(InputError, match="not a regular file"):
        load_article(folder / "pipe.md")


def test_the_articles_folder_itself_may_be_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real-articles"
    article(real, "story.md")
    folder = tmp_path / "articles"
    folder.symlink_to(real, target_is_directory=True)
    (article_path,) = article_files(folder)
    assert article_path == folder / "story.md"
    assert [a.title for a in load_articles(folder)] == ["A story"]


# --- through the commands -----------------------------------------------------------------------


def test_the_digest_and_forward_never_read_a_symlink_to_etc_passwd(sample: Path) -> None:
    from tests.cli import invoke

    (sample / "articles" / "secret.md").symlink_to("/etc/passwd")
    (sample / "articles" / "loop.md").symlink_to(sample / "articles" / "loop.md")
    digest = invoke("digest", "--date", "2026-11-27", env={"MAILER_TIMEZONE": "UTC"})
    assert digest.exit_code == 0, digest.output
    assert "secret.md: skipped" in digest.output and "loop.md: skipped" in digest.output
    previews = sample / "previews" / "digest-2026-11-27"
    assert all(b"root:" not in p.read_bytes() for p in previews.iterdir() if p.is_file())
    for ref in ("secret", "articles/secret.md", "loop", "articles/loop.md"):
        forward = invoke("forward", ref, "--to", "friend@example.net", "--sender", "a@example.org")
        assert forward.exit_code == 2, (ref, forward.output)
        assert "root:" not in forward.output
        errors = [line for line in forward.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, forward.output
