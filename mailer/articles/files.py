"""Finding article files (symlinks kept inside the folder) and reading them safely."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

from mailer.errors import InputError
from mailer.headers import TEXT_CONTROLS

ARTICLE_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm")
HTML_SUFFIXES = (".html", ".htm")
MAX_ARTICLE_BYTES = 5 * 1024 * 1024
# Never in a file: controls but tab and newline (CR is gone by then).
_CONTROL_RE = re.compile(f"[{TEXT_CONTROLS}]")

SkipHandler = Callable[[Path, str], None]
"""Told of each file ``load_articles`` leaves out, and why: ``on_skip(path, reason)``."""


def article_files(folder: Path, *, on_skip: SkipHandler | None = None) -> list[Path]:
    """The article files under ``folder``, sorted, each real file once (by its own path
    where it has one), names starting with ``.`` or ``_`` passed over.

    Symlinks are followed while they stay inside the folder. A symlink that leads outside,
    is broken or loops, and anything with an article's name that is not a regular file (a
    pipe would block a read), is left out and told to ``on_skip``.
    """
    root = _real_path(folder)
    if root is None or not _is_dir(root):
        raise InputError(f"{folder}: articles folder not found")

    def skip(path: Path, reason: str) -> None:
        if on_skip is not None:
            on_skip(path, reason)

    found: dict[Path, tuple[bool, Path]] = {}  # real path -> (through a symlink?, path)
    walked: set[Path] = set()
    # Real folders first, then those reached through symlinks, so that a file has its own
    # path when it has one, and a symlink loop ends at a folder already walked.
    pending: list[tuple[Path, Path, bool]] = [(folder, root, False)]
    linked: list[tuple[Path, Path, bool]] = []
    while pending or linked:
        directory, real_dir, through_link = pending.pop() if pending else linked.pop(0)
        if real_dir in walked:
            continue
        walked.add(real_dir)
        try:
            with os.scandir(directory) as entries:
                names = sorted(entry.name for entry in entries)
        except OSError as exc:
            raise InputError(f"{directory}: cannot list the folder ({exc.strerror})") from exc
        for name in names:
            if name.startswith((".", "_")):
                continue
            path = directory / name
            is_article = Path(name).suffix.lower() in ARTICLE_SUFFIXES
            real = real_dir / name
            is_link = path.is_symlink()
            if is_link:
                target = _real_path(path)
                if target is None or not _exists(target):
                    if is_article:
                        skip(path, "a broken symlink, or a symlink loop")
                    continue
                if not target.is_relative_to(root):
                    if is_article or _is_dir(target):
                        skip(path, "a symlink that leads outside the articles folder")
                    continue
                real = target
            if _is_dir(real):
                (linked if is_link else pending).append((path, real, through_link or is_link))
            elif is_article:
                if not _is_file(real):
                    skip(path, "not a regular file")
                    continue
                candidate = (through_link or is_link, path)
                if real not in found or candidate < found[real]:
                    found[real] = candidate
    return sorted(path for _, path in found.values())


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path``, every symlink resolved, is ``folder`` (resolved too) or under it."""
    real, root = _real_path(path), _real_path(folder)
    return real is not None and root is not None and real.is_relative_to(root)


def _real_path(path: Path) -> Path | None:
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError, RuntimeError):
        return None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def read_bytes(path: Path) -> tuple[bytes, float]:
    """The bytes of a regular file (never a pipe or device, which could block), at most
    ``MAX_ARTICLE_BYTES``, and its modification time."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise InputError(f"{path}: not a regular file")
            if info.st_size > MAX_ARTICLE_BYTES:
                raise InputError(f"{path}: file is too large for an article ({info.st_size} bytes)")
            raw = handle.read(MAX_ARTICLE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    if len(raw) > MAX_ARTICLE_BYTES:
        raise InputError(f"{path}: file is too large for an article (it grew while read)")
    if not raw.strip():
        raise InputError(f"{path}: file is empty")
    return raw, info.st_mtime


def read_text(path: Path) -> tuple[str, float]:
    """The text of a regular file, which must be UTF-8 without controls, and its
    modification time."""
    raw, mtime = read_bytes(path)
    if b"\x00" in raw:
        raise InputError(f"{path}: looks like a binary file, not an article")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8 text (save the file as UTF-8)") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise InputError(f"{path}: file is empty")
    match = _CONTROL_RE.search(text)
    if match:
        line = text[: match.start()].count("\n") + 1
        raise InputError(
            f"{path}:{line}: contains the control character U+{ord(match.group()):04X}; "
            "is it a binary file?"
        )
    return text, mtime
