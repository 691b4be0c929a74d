"""Images kept beside the articles (issue 13): an article's local ``image:`` checked when it is
read, a preview folder that holds the image its HTML shows, and a send that carries it only
from the public site (over a real aiosmtpd server)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from mailer.articles import load_article, load_articles
from mailer.errors import InputError
from mailer.ledger import Ledger
from mailer.pipeline import preview_media
from mailer.transports.files import MARKER, FilesTransport
from tests.cli import invoke, refused
from tests.conftest import REPO
from tests.mail import body, parsed
from tests.smtpd import TEST_PUBLIC_URL, smtp_server

DATE = "2026-11-27"
SAMPLE_IMAGE = REPO / "articles" / "images" / "market-hall.jpg"
HALL = "2026-11-22-market-hall.md"
JPEG = SAMPLE_IMAGE.read_bytes()
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 40
GIF = b"GIF89a" + b"\0" * 40
WEBP = b"RIFF\x24\0\0\0WEBPVP8 " + b"\0" * 40
MIB = 1024 * 1024


def story(folder: Path, image: str, name: str = "a.md") -> Path:
    """An article whose ``image:`` (line 4) is ``image``, quoted as YAML reads it back."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"---\ntitle: A story\ndate: {DATE}\nimage: {json.dumps(image)}\n---\n\nThe story.\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An articles folder with images of each kind, and hostile things beside them."""
    articles = tmp_path / "mine"  # not "articles": the sample may be there
    images = articles / "images"
    images.mkdir(parents=True)
    (images / "market-hall.jpg").write_bytes(JPEG)
    (images / "a b.jpg").write_bytes(JPEG)
    (images / "photo.png").write_bytes(PNG)
    (images / "anim.gif").write_bytes(GIF)
    (images / "pic.webp").write_bytes(WEBP)
    (images / "notes.pdf").write_text("not a picture", encoding="utf-8")
    (images / "logo.svg").write_text("<svg onload='alert(1)'/>", encoding="utf-8")
    (images / ".hidden.jpg").write_bytes(JPEG)
    (images / "png-named.jpg").write_bytes(PNG)
    (images / "text.png").write_text("GIF89a is what I am not", encoding="utf-8")
    (images / "empty.gif").write_bytes(b"")
    (images / "folder.jpg").mkdir()
    os.mkfifo(images / "fifo.jpg")  # opened without O_NONBLOCK, this would hang
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(JPEG)
    (images / "escape.jpg").symlink_to(outside / "secret.jpg")
    (images / "alias.jpg").symlink_to("market-hall.jpg")
    (articles / "linked").symlink_to(outside, target_is_directory=True)
    return articles


# --- articles -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("images/market-hall.jpg", "images/market-hall.jpg"),
        ("./images/../images/market-hall.jpg", "images/market-hall.jpg"),
        ("images//market-hall.jpg", "images/market-hall.jpg"),
        ("images/alias.jpg", "images/market-hall.jpg"),  # a link inside: where it leads
        ("images/a b.jpg", "images/a b.jpg"),
        ("images/photo.png", "images/photo.png"),
        ("images/anim.gif", "images/anim.gif"),
        ("images/pic.webp", "images/pic.webp"),
        ("https://example.com/images/x.jpg", "https://example.com/images/x.jpg"),
        ("http://example.com/no-such-file.svg", "http://example.com/no-such-file.svg"),
    ],
)
def test_a_local_image_is_its_path_in_the_articles_folder(
    folder: Path, image: str, expected: str
) -> None:
    article = load_article(story(folder, image), folder=folder)
    assert article.image == expected


def test_a_path_is_relative_to_the_article_file(folder: Path) -> None:
    (folder / "2026" / "pics").mkdir(parents=True)
    (folder / "2026" / "pics" / "p.png").write_bytes(PNG)
    up = load_article(story(folder / "2026", "../images/photo.png", "b.md"), folder=folder)
    assert up.image == "images/photo.png"
    beside = load_article(story(folder / "2026", "pics/p.png", "c.md"), folder=folder)
    assert beside.image == "2026/pics/p.png"
    found = {a.image for a in load_articles(folder)}
    assert found == {"images/photo.png", "2026/pics/p.png"}


def test_without_a_folder_the_articles_own_folder_is_the_limit(folder: Path) -> None:
    assert load_article(story(folder, "images/photo.png")).image == "images/photo.png"
    (folder / "top.png").write_bytes(PNG)
    inner = story(folder / "images", "../top.png")
    with pytest.raises(InputError, match="leads outside the articles folder"):
        load_article(inner)  # its own folder is images/: the way up leaves it
    assert load_article(inner, folder=folder).image == "top.png"


HOSTILE = [
    ("file:///etc/passwd", "must be an http(s) URL or the path of an image file"),
    ("javascript:alert(1)", "must be an http(s) URL or the path of an image file"),
    ("JaVaScRiPt:alert(1)//x.jpg", "must be an http(s) URL or the path of an image file"),
    ("data:image/png;base64,iVBORw0KGgo=", "must be an http(s) URL or the path of an image"),
    ("vbscript:x.jpg", "must be an http(s) URL or the path of an image file"),
    ("C:/photos/x.jpg", "must be an http(s) URL or the path of an image file"),
    ("http://exa mple.com/x.jpg", "must be an http(s) URL or the path of an image file"),
    ("//evil.example/x.jpg", "must be a path relative to the article file"),
    ("/etc/x.jpg", "must be a path relative to the article file"),
    ("~/x.jpg", "must be a path relative to the article file"),
    ("images\\market-hall.jpg", "must be a path with / between its parts"),
    ("images/a\x00b.jpg", "'image' contains the control character U+0000; remove it"),
    ("images/\x1b[31m.jpg", "'image' contains the control character U+001B; remove it"),
    ("images/a\u202egpj.exe", "'image' contains the control character U+202E; remove it"),
    ("images/a\nb.jpg", "'image' must be on one line"),
    ("a/" * 520 + "x.jpg", "'image' is longer than 1024 characters"),
    ("x" * 3000 + ".jpg", "'image' is longer than 2048 characters"),
    ("images/notes.pdf", "must name a .jpg, .jpeg, .png, .gif or .webp file, not"),
    ("images/notes.txt", "must name a .jpg, .jpeg, .png, .gif or .webp file, not"),
    ("images/logo.svg", "must name a .jpg, .jpeg, .png, .gif or .webp file, not"),
    ("images/", "must name a .jpg, .jpeg, .png, .gif or .webp file, not"),
    ("images/missing.jpg", "names no file: 'images/missing.jpg'"),
    ("x" * 300 + ".jpg", "cannot be read (File name too long)"),
    ("../outside/secret.jpg", "leads outside the articles folder"),
    ("../../../../../../../../etc/x.jpg", "leads outside the articles folder"),
    ("images/escape.jpg", "leads outside the articles folder"),
    ("linked/secret.jpg", "leads outside the articles folder"),
    ("images/.hidden.jpg", "leads to a hidden file or folder"),
    ("images/png-named.jpg", "is not a JPEG image (by its first bytes)"),
    ("images/text.png", "is not a PNG image (by its first bytes)"),
    ("images/empty.gif", "is not a GIF image (by its first bytes)"),
    ("images/fifo.jpg", "is not a regular file"),
    ("images/folder.jpg", "is not a regular file"),
]


@pytest.mark.parametrize(("image", "problem"), HOSTILE, ids=[repr(h[0])[:40] for h in HOSTILE])
def test_a_bad_image_is_one_error_line_naming_file_line_and_field(
    folder: Path, image: str, problem: str
) -> None:
    path = story(folder, image)
    with pytest.raises(InputError) as caught:
        load_article(path, folder=folder)
    message = caught.value.message
    assert message.startswith(f"{path}:4: 'image' ") and problem in message, message
    assert "\n" not in message and "\x00" not in message and "\x1b" not in message


@pytest.mark.parametrize("image", ["javascript:alert(1)", "../outside/secret.jpg", "images/x.jpg"])
def test_the_cli_refuses_a_bad_image_with_exit_2_and_one_line(
    sample: Path, folder: Path, image: str
) -> None:
    path = story(folder, image)
    line = refused(invoke("digest", "--articles", str(folder), "--date", DATE))
    assert line.startswith(f"Error: {path}:4: 'image' ")
    assert not (sample / "previews").exists()


def test_the_size_limit_is_5_mib(folder: Path) -> None:
    (folder / "images" / "five.jpg").write_bytes(JPEG[:3] + b"\0" * (5 * MIB - 3))
    article = load_article(story(folder, "images/five.jpg"), folder=folder)
    assert article.image == "images/five.jpg"
    (folder / "images" / "big.jpg").write_bytes(JPEG[:3] + b"\0" * (5 * MIB - 2))
    with pytest.raises(InputError, match=r":4: 'image' is larger than 5 MiB \(5,242,881 bytes\)"):
        load_article(story(folder, "images/big.jpg", "b.md"), folder=folder)


# --- previews -------------------------------------------------------------------------------


def hero_src(html: str) -> str:
    found = re.findall(r'<img class="hero" src="([^"]*)"', html)
    assert len(found) == 1, found
    return found[0]


def test_a_preview_holds_the_image_its_html_shows(sample: Path) -> None:
    result = invoke("digest", "--date", DATE)
    assert result.exit_code == 0, result.output
    preview = sample / "previews" / f"digest-{DATE}"
    html = (preview / "digest.html").read_text(encoding="utf-8")
    src = hero_src(html)
    assert src == "media/images/market-hall.jpg"
    assert (preview / src).read_bytes() == JPEG
    assert 'alt="Drawing of the red-brick market hall' in html
    # Each message is what a send would carry (the link is the same, relative, one).
    eml = sorted(preview.glob("*.eml"))[0]
    assert hero_src(body(parsed(eml.read_bytes()), "html")) == src
    marker = (preview / MARKER).read_text(encoding="utf-8")
    assert marker.endswith("media/images/market-hall.jpg\n")
    # Written again: replaced whole, its media/ included, nothing left of the first.
    assert invoke("digest", "--date", DATE).exit_code == 0
    found = sorted(str(p.relative_to(preview)) for p in preview.rglob("*"))
    assert [f for f in found if f.startswith("media")] == [
        "media",
        "media/images",
        "media/images/market-hall.jpg",
    ]
    assert not [p for p in preview.parent.iterdir() if p.name.startswith(".")]


def test_with_a_public_url_the_preview_shows_the_sites_image(sample: Path) -> None:
    result = invoke("digest", "--date", DATE, env={"MAILER_PUBLIC_URL": TEST_PUBLIC_URL})
    assert result.exit_code == 0, result.output
    preview = sample / "previews" / f"digest-{DATE}"
    html = (preview / "digest.html").read_text(encoding="utf-8")
    assert hero_src(html) == f"{TEST_PUBLIC_URL}/media/images/market-hall.jpg"
    assert not (preview / "media").exists()  # nothing links to it


def test_an_image_changed_after_loading_is_checked_again_for_the_preview(folder: Path) -> None:
    article = load_article(story(folder, "images/market-hall.jpg"), folder=folder)
    assert preview_media([article], folder) == {"media/images/market-hall.jpg": JPEG}
    (folder / "images" / "market-hall.jpg").write_bytes(PNG)  # no longer a JPEG
    with pytest.raises(InputError, match=r"a\.md: image is not a JPEG image"):
        preview_media([article], folder)
    (folder / "images" / "market-hall.jpg").unlink()
    (folder / "images" / "market-hall.jpg").symlink_to(folder.parent / "outside" / "secret.jpg")
    with pytest.raises(InputError, match=r"a\.md: image leads outside the articles folder"):
        preview_media([article], folder)


@pytest.mark.parametrize(
    ("stray", "shown"),
    [
        ("media/notes.txt", "a file (media/notes.txt)"),
        ("media/images/extra.jpg", "a file (media/images/extra.jpg)"),
        ("media/more/", "a folder (media/more/)"),
        ("other/x.txt", "a folder (other/)"),
        ("media/link", "a file (media/link)"),
    ],
)
def test_a_preview_whose_media_holds_anything_else_is_kept(
    sample: Path, stray: str, shown: str
) -> None:
    assert invoke("digest", "--date", DATE).exit_code == 0
    preview = sample / "previews" / f"digest-{DATE}"
    target = preview / stray.rstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if stray.endswith("/"):
        target.mkdir()
    elif stray.endswith("link"):
        target.symlink_to(sample / "lists")
    else:
        target.write_text("mine", encoding="utf-8")
    before = sorted(str(p.relative_to(sample)) for p in sample.rglob("*"))
    line = refused(invoke("digest", "--date", DATE))
    assert line.endswith(f"holds {shown} that no preview wrote; refusing to replace it")
    assert sorted(str(p.relative_to(sample)) for p in sample.rglob("*")) == before


def test_a_marker_from_before_subfolders_protects_a_media_folder(sample: Path) -> None:
    assert invoke("digest", "--date", DATE).exit_code == 0
    preview = sample / "previews" / f"digest-{DATE}"
    text = (preview / MARKER).read_text(encoding="utf-8")
    (preview / MARKER).write_text(text.split("Files in subfolders")[0], encoding="utf-8")
    line = refused(invoke("digest", "--date", DATE))
    assert line.endswith("holds a folder (media/) that no preview wrote; refusing to replace it")
    assert (preview / "media" / "images" / "market-hall.jpg").read_bytes() == JPEG


def test_a_media_link_to_a_users_folder_is_replaced_but_never_followed(sample: Path) -> None:
    assert invoke("digest", "--date", DATE).exit_code == 0
    preview = sample / "previews" / f"digest-{DATE}"
    mine = sample / "photos"
    (mine / "images").mkdir(parents=True)
    (mine / "images" / "market-hall.jpg").write_bytes(b"my own photo")
    shutil.rmtree(preview / "media")
    (preview / "media").symlink_to(mine, target_is_directory=True)
    assert invoke("digest", "--date", DATE).exit_code == 0
    assert (mine / "images" / "market-hall.jpg").read_bytes() == b"my own photo"
    assert not (preview / "media").is_symlink()
    assert (preview / "media" / "images" / "market-hall.jpg").read_bytes() == JPEG


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/abs.jpg",
        "../up.jpg",
        "media/../../up.jpg",
        "media/./x.jpg",
        "media//x.jpg",
        ".hidden",
        "media/.x.jpg",
        "media\\x.jpg",
        "media/a\x00b.jpg",
        "media/a\nb.jpg",
        "media/" + "x" * 300 + ".jpg",
        "m/" * 600 + "x",
        MARKER,
    ],
)
def test_the_files_transport_refuses_odd_names_before_writing(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError, match="not a name of a file in a preview folder"):
        FilesTransport(tmp_path / "preview", extras={"digest.html": "x", name: b"x"})
    assert list(tmp_path.iterdir()) == []


# --- sends ----------------------------------------------------------------------------------


def test_a_send_carries_the_image_from_the_public_site(sample: Path) -> None:
    with smtp_server() as server:
        env = server.env()
        assert env["MAILER_PUBLIC_URL"] == TEST_PUBLIC_URL
        result = invoke("digest", "--send", "--yes", "--date", DATE, env=env)
        assert result.exit_code == 0, result.output
        received = server.recorder.received
    assert len(received) == 5
    for message in received:
        html = body(message.message, "html")
        assert hero_src(html) == f"{TEST_PUBLIC_URL}/media/images/market-hall.jpg"
        assert 'src="media/' not in html


def test_a_send_without_a_public_url_is_refused_before_anything(sample: Path) -> None:
    with smtp_server() as server:
        env = server.env()
        del env["MAILER_PUBLIC_URL"]
        result = invoke("digest", "--send", "--yes", "--date", DATE, env=env)
        line = refused(result)
        assert line == (
            f"Error: articles/{HALL}: image images/market-hall.jpg is a local file, which "
            "readers cannot load from an e-mail"
        )
        assert "Hint: nothing was sent; set MAILER_PUBLIC_URL" in result.output
        assert "media/images/market-hall.jpg" in result.output
        assert server.recorder.received == [] and server.recorder.mail_from == []
    with Ledger.open(sample / ".mailer" / "ledger.sqlite3", readonly=True) as ledger:
        assert ledger.campaigns() == []
    assert not (sample / ".mailer" / "archive").exists()


def test_an_https_image_needs_no_public_url_to_send(sample: Path) -> None:
    hall = sample / "articles" / HALL
    text = hall.read_text(encoding="utf-8")
    hall.write_text(
        text.replace("image: images/market-hall.jpg", "image: https://cdn.example.org/hall.jpg"),
        encoding="utf-8",
    )
    with smtp_server() as server:
        env = server.env()
        del env["MAILER_PUBLIC_URL"]
        result = invoke("digest", "--send", "--yes", "--date", DATE, env=env)
        assert result.exit_code == 0, result.output
        received = server.recorder.received
    assert len(received) == 5
    assert hero_src(body(received[0].message, "html")) == "https://cdn.example.org/hall.jpg"


# --- a forward of the article with the local image --------------------------------------------

FRIEND = "friend@example.net"
FORWARD = ("forward", "2026-11-22-market-hall", "--sender", "Alice <alice@example.org>")


def test_a_forward_preview_holds_the_image_too(sample: Path) -> None:
    result = invoke(*FORWARD, "--to", FRIEND)
    assert result.exit_code == 0, result.output
    (preview,) = (sample / "previews").glob("forward-*")
    html = (preview / "forward.html").read_text(encoding="utf-8")
    src = re.findall(r'<img[^>]* src="([^"]*)"', html)
    assert src == ["media/images/market-hall.jpg"]
    assert (preview / src[0]).read_bytes() == JPEG


def test_a_forward_send_needs_the_public_site_for_the_image(sample: Path) -> None:
    with smtp_server() as server:
        env = server.env()
        result = invoke(*FORWARD, "--to", FRIEND, "--send", env=env)
        assert result.exit_code == 0, result.output
        (got,) = server.recorder.received
        html = body(got.message, "html")
        assert f'src="{TEST_PUBLIC_URL}/media/images/market-hall.jpg"' in html
        del env["MAILER_PUBLIC_URL"]
        result = invoke(*FORWARD, "--to", "other@example.net", "--send", env=env)
        line = refused(result)
        assert "image images/market-hall.jpg is a local file" in line
        assert len(server.recorder.received) == 1 and len(server.recorder.mail_from) == 1
    with Ledger.open(sample / ".mailer" / "ledger.sqlite3", readonly=True) as ledger:
        assert len(ledger.campaigns(kind="forward")) == 1  # nothing recorded for the refused one
