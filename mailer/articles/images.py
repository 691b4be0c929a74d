"""Images kept beside the articles: a local ``image:`` checked (a path inside the articles
folder to a real JPEG, PNG, GIF or WebP file of at most 5 MiB), and such a file read back.

A local image is named by its path relative to the articles folder, ``/``-separated, every
symlink resolved (``images/market-hall.jpg``): the path the site serves it at under
``/media/`` and a preview folder holds it at. Problems are ``ValueError``s whose text goes
after the caller's own words: ``f"{file}:{line}: 'image' {problem}"``.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path, PurePosixPath

from mailer.articles.fields import excerpt
from mailer.headers import TEXT_CONTROLS

# The suffixes a local image may have, and the type each is served as.
IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGE_PATH = 1024  # characters of a local path (an http(s) image may be 2048)
_KINDS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WebP"}
_SUFFIXES = ", ".join(list(IMAGE_TYPES)[:-1]) + " or " + list(IMAGE_TYPES)[-1]
_HEAD_BYTES = 16
# A scheme (``file:``, ``javascript:``, ``data:``, ``C:``): a URL, never a path of ours.
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_UNSAFE_RE = re.compile(f"[\\\\\t\n{TEXT_CONTROLS}]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def image_type(path: str) -> str | None:
    """The Content-Type of a local image path, by its suffix; ``None`` for any other file."""
    return IMAGE_TYPES.get(PurePosixPath(path).suffix.lower())


def is_media_path(path: str) -> bool:
    """Whether ``path`` has the form of a local image as ``local_image`` gives it: relative,
    ``/``-separated, no empty, ``.``, ``..`` or hidden part, an image suffix, no controls."""
    parts = path.split("/")
    return (
        0 < len(path) <= MAX_IMAGE_PATH
        and not _UNSAFE_RE.search(path)
        and not _SURROGATE_RE.search(path)  # a name that is not UTF-8 cannot be a URL
        and all(part and not part.startswith(".") for part in parts)
        and image_type(path) is not None
    )


def local_image(value: str, *, base: Path, folder: Path) -> str:
    """``value``, an ``image:`` that is not an http(s) URL, as a local image: a path relative
    to ``base`` (the article file's folder) that leads, symlinks resolved, to an image file
    inside ``folder`` (the articles folder). Returns its path relative to ``folder``;
    ``ValueError`` says what is wrong."""
    shown = excerpt(value)
    if _SCHEME_RE.match(value):
        raise ValueError(
            f"must be an http(s) URL or the path of an image file beside the articles, not {shown}"
        )
    if _UNSAFE_RE.search(value):
        raise ValueError(f"must be a path with / between its parts, not {shown}")
    if value.startswith(("/", "~")):
        raise ValueError(f"must be a path relative to the article file, not {shown}")
    if len(value) > MAX_IMAGE_PATH:
        raise ValueError(f"is longer than {MAX_IMAGE_PATH} characters: {shown}")
    if image_type(value) is None:
        raise ValueError(f"must name a {_SUFFIXES} file, not {shown}")
    root, relative = _resolved(folder, base / value, image_type(value), shown)
    _check_file(root, relative, shown, whole=False)
    return relative


def read_image(folder: Path, path: str) -> bytes:
    """The bytes of the local image ``path`` (as ``local_image`` gives it) of the articles
    folder ``folder``, checked again as it is now: inside the folder, symlinks resolved, a
    regular file of at most ``MAX_IMAGE_BYTES`` whose first bytes are of its type."""
    shown = excerpt(path)
    if not is_media_path(path):
        raise ValueError(f"is not the path of an image file: {shown}")
    root, relative = _resolved(folder, folder / path, image_type(path), shown)
    return _check_file(root, relative, shown, whole=True)


def _resolved(folder: Path, asked: Path, kind: str | None, shown: str) -> tuple[Path, str]:
    """``(the folder, symlinks resolved; the path inside it that ``asked`` leads to)``, which
    must be a local image's path of the same type (``kind``)."""
    try:
        root = Path(os.path.realpath(folder))
        real = Path(os.path.realpath(asked))
    except (OSError, ValueError):
        raise ValueError(f"names no file: {shown}") from None
    if real == root or not real.is_relative_to(root):
        raise ValueError(f"leads outside the articles folder {folder}: {shown}")
    relative = real.relative_to(root).as_posix()
    if not is_media_path(relative) or image_type(relative) != kind:
        raise ValueError(
            f"leads to a hidden file or folder, a file of another type, or a name that is "
            f"not UTF-8: {shown}"
        )
    return root, relative


def _check_file(root: Path, path: str, shown: str, *, whole: bool) -> bytes:
    """Open ``path`` (relative to ``root``, no symlink in it) part by part from ``root``,
    following no link swapped in since, at any part (nor blocking on a pipe): a regular
    file, not too big, of the type of ``path``. Returns its bytes with ``whole``, else only
    its first bytes."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_BINARY", 0)
    try:
        fd = _open_inside(root, path, flags)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ValueError(f"is not a regular file: {shown}")
            if info.st_size > MAX_IMAGE_BYTES:
                raise ValueError(
                    f"is larger than {MAX_IMAGE_BYTES // 1024 // 1024} MiB "
                    f"({info.st_size:,} bytes): {shown}"
                )
            data = _read(fd, MAX_IMAGE_BYTES + 1 if whole else _HEAD_BYTES)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise ValueError(f"names no file: {shown}") from None
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror}): {shown}") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"grew past {MAX_IMAGE_BYTES // 1024 // 1024} MiB: {shown}")
    kind = image_type(path) or ""
    if not _looks_like(data[:_HEAD_BYTES], kind):
        raise ValueError(
            f"is not a {_KINDS.get(kind, 'known')} image (by its first bytes): {shown}"
        )
    return data


def _open_inside(root: Path, path: str, flags: int) -> int:
    """``os.open`` of ``path`` under ``root`` one folder at a time, never through a link: a
    folder on the way turned into a symlink after the path was checked is refused."""
    folder_flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
    *folders, name = path.split("/")
    here = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        for folder in folders:
            inner = os.open(folder, folder_flags, dir_fd=here)
            os.close(here)
            here = inner
        return os.open(name, flags, dir_fd=here)
    finally:
        os.close(here)


def _read(fd: int, limit: int) -> bytes:
    """Up to ``limit`` bytes of an open file, fewer only at its end."""
    chunks: list[bytes] = []
    while limit > 0:
        chunk = os.read(fd, min(limit, 1024 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        limit -= len(chunk)
    return b"".join(chunks)


def _looks_like(head: bytes, kind: str) -> bool:
    """Whether a file's first bytes are the signature of an image of type ``kind``."""
    if kind == "image/jpeg":
        return head.startswith(b"\xff\xd8\xff")
    if kind == "image/png":
        return head.startswith(b"\x89PNG\r\n\x1a\n")
    if kind == "image/gif":
        return head.startswith((b"GIF87a", b"GIF89a"))
    if kind == "image/webp":
        return head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    return False


__all__ = [
    "IMAGE_TYPES",
    "MAX_IMAGE_BYTES",
    "image_type",
    "is_media_path",
    "local_image",
    "read_image",
]
