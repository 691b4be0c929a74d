"""The files transport: previews. Each message becomes an ``.eml`` file; the folder appears
whole (written to a temporary folder, then swapped into place) or not at all.

A preview folder holds a marker file, ``.mailer-preview``. Only a folder with that marker is
ever replaced: an existing file, a folder without it, the current directory or one of its
parents is refused before anything is written, so that a wrong ``--out`` cannot delete
anyone's files. Extra files may sit in subfolders (``media/images/market-hall.jpg``, the
images the preview's HTML shows); the marker lists them, and a folder holding anything it
does not list (someone's own files) is never replaced.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import cast

from mailer.errors import InputError
from mailer.models import Outgoing
from mailer.transports.base import Reply

MARKER = ".mailer-preview"
MARKER_TEXT = (
    "This folder holds mail previews written by mailer; nothing in it was sent.\n"
    "mailer replaces the whole folder when it writes these previews again,\n"
    "so keep no other files here.\n"
)
# After this line, the marker lists the files it wrote in subfolders, one per line.
MANIFEST_HEAD = "Files in subfolders, written with these previews:\n"
_MAX_MARKER_BYTES = 1024 * 1024
_MAX_EXTRA_NAME = 1024
_UNSAFE_NAME_RE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029]")


def eml_name(index: int, email: str) -> str:
    """``000001-alice_example.org.eml``: no separators, no leading dots, bounded length."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", email.replace("@", "_at_"))[:80].lstrip(".")
    return f"{index:06d}-{safe or 'recipient'}.eml"


def check_extra_name(name: str) -> None:
    """``InputError`` unless ``name`` is a file a preview folder may hold beside its ``.eml``
    files: ``/``-separated, relative, no empty, ``.``, ``..`` or hidden part, no controls."""
    parts = name.split("/")
    if (
        not 0 < len(name) <= _MAX_EXTRA_NAME
        or name == MARKER
        or _UNSAFE_NAME_RE.search(name)
        or any(not part or part.startswith(".") or len(os.fsencode(part)) > 255 for part in parts)
    ):
        raise InputError(f"{name[:80]!r}: not a name of a file in a preview folder")


class FilesTransport:
    """Writes previews into ``folder`` atomically; refuses, at construction, a ``folder``
    that is not new and not an earlier preview (``InputError`` naming it). ``extras`` are
    other files to write in it, by name (``digest.html``, ``media/images/hall.jpg``)."""

    def __init__(self, folder: Path, *, extras: Mapping[str, str | bytes] | None = None) -> None:
        self.folder = folder
        self._extras = dict(extras or {})
        for name in self._extras:
            check_extra_name(name)
        self._tmp: Path | None = None
        self._created: list[Path] = []  # parent folders this run made, removed if it fails
        self.written = 0
        try:
            # Resolved once: a relative path or ``.`` gets a real name and parent, and the
            # temporary folder lands beside the real target (same file system) even when
            # ``folder`` is a symlink.
            self._real = folder.resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop
            raise InputError(f"{folder}: cannot use as a preview folder ({exc})") from exc
        self._where = _describe(folder, self._real)
        self._check_target()

    def _check_target(self) -> None:
        """Refuse anything but a new folder or an earlier preview, before writing a byte."""
        real, where = self._real, self._where
        try:
            cwd = Path.cwd().resolve()
        except OSError:  # the current directory was deleted: it cannot be the target
            cwd = None
        if cwd is not None and (real == cwd or real in cwd.parents):
            what = "is" if real == cwd else "holds"
            raise InputError(
                f"{where}: {what} the current directory; previews need a folder of their own"
            )
        try:
            mode = os.lstat(real).st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise InputError(f"{where}: cannot use as a preview folder ({exc.strerror})") from exc
        if not stat.S_ISDIR(mode):
            raise InputError(f"{where}: exists and is not a folder; refusing to replace it")
        try:
            marked = _is_regular_file(real / MARKER)
            folders = sorted(e.name for e in os.scandir(real) if e.is_dir(follow_symlinks=False))
            if not marked:
                raise InputError(
                    f"{where}: exists and is not a preview folder (it has no {MARKER} file); "
                    "refusing to replace it, choose a new folder"
                )
            written = _listed(real / MARKER) if folders else set()
            stray = next(filter(None, (_stray(real / f, f, written) for f in folders)), None)
        except OSError as exc:
            raise InputError(f"{where}: cannot read the folder ({exc.strerror})") from exc
        if stray is not None:  # someone put their own things here
            raise InputError(
                f"{where}: holds {stray} that no preview wrote; refusing to replace it"
            )

    def _staging(self) -> Path:
        if self._tmp is None:
            try:
                self._make_parents()
                # The name is cut so that a long but valid target name still leaves room.
                prefix = f".{self._real.name[:100]}."
                tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=self._real.parent))
                self._tmp = tmp
                nested = sorted(name for name in self._extras if "/" in name)
                listed = MANIFEST_HEAD + "".join(f"{name}\n" for name in nested) if nested else ""
                (tmp / MARKER).write_text(MARKER_TEXT + listed, encoding="utf-8")
            except OSError as exc:
                self._discard()
                raise InputError(
                    f"{self._where}: cannot create the preview folder ({exc.strerror})"
                ) from exc
        return self._tmp

    def _make_parents(self) -> None:
        missing: list[Path] = []
        parent = self._real.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:
                continue
            self._created.append(path)

    def _discard(self) -> None:
        """Remove what this run wrote: the temporary folder and the parents it made."""
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        while self._created:
            try:
                self._created.pop().rmdir()
            except OSError:  # not empty: something else lives there now
                self._created.clear()

    async def open_channel(self) -> FilesTransport:
        self._staging()
        return self

    async def send(self, message: Outgoing, ready: Awaitable[None] | None = None) -> Reply:
        if ready is not None:
            await ready
        path = self._staging() / eml_name(message.index, message.recipient.email)
        try:
            with path.open("wb") as handle:
                handle.write(message.data)
        except OSError as exc:  # a full disk, a read-only or vanished folder
            raise InputError(f"{self._where}: cannot write the previews ({exc.strerror})") from exc
        self.written += 1
        return Reply(250, f"written to {path.name}")

    async def close(self) -> None:
        return None

    async def finish(self, *, complete: bool) -> None:
        if not complete:
            self._discard()
            return
        tmp = self._staging()
        try:
            for name, content in self._extras.items():
                data = content.encode("utf-8") if isinstance(content, str) else content
                # Inside our own new folder (mode 0700 until installed): no one else can
                # have put a link here, and the whole folder appears at once or not at all.
                path = tmp.joinpath(*name.split("/"))
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            os.chmod(tmp, 0o755)
            self._check_target()  # again: the folder may have appeared since
            self._install(tmp)
        except OSError as exc:
            self._discard()
            raise InputError(f"{self._where}: cannot write the previews ({exc.strerror})") from exc
        except InputError:
            self._discard()
            raise
        self._tmp = None
        self._created.clear()

    def _install(self, tmp: Path) -> None:
        """Put the finished ``tmp`` at the target; an earlier preview is swapped out whole."""
        real = self._real
        if not os.path.lexists(real):
            os.rename(tmp, real)
            return
        if _exchange(tmp, real):
            # ``tmp`` now holds the earlier preview.
            _remove_previous(tmp, self._where)
            return
        # No atomic swap here (not Linux, or the file system cannot): the earlier preview
        # steps aside and the new one takes its name, a short moment with neither.
        previous = tmp.with_name(f"{tmp.name}-previous")
        os.rename(real, previous)
        try:
            os.rename(tmp, real)
        except OSError:
            os.rename(previous, real)
            raise
        _remove_previous(previous, self._where)


def _describe(folder: Path, real: Path) -> str:
    """The folder as given, and where it really is when that is not obvious from it."""
    if folder.name in ("", "..") or Path(os.path.abspath(folder)) != real:
        return f"{folder} ({real})"
    return str(folder)


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _listed(marker: Path) -> set[str]:
    """The files in subfolders that the preview of ``marker`` wrote (none for a marker
    written before previews had subfolders, or one that is not ours)."""
    with marker.open("rb") as handle:
        text = handle.read(_MAX_MARKER_BYTES).decode("utf-8", "replace")
    head, found, listed = text.partition(MANIFEST_HEAD)
    return set(listed.splitlines()) if found and head == MARKER_TEXT else set()


def _stray(folder: Path, name: str, written: set[str]) -> str | None:
    """The first thing under ``folder`` (``name`` in the preview) that the preview did not
    write, as ``name/...``; ``None`` when it holds only files in ``written``. A link, a pipe
    or a folder with nothing written in it is stray."""
    if not any(path.startswith(name + "/") for path in written):
        return f"a folder ({name}/)"
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            inside = f"{name}/{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                stray = _stray(Path(entry.path), inside, written)
                if stray is not None:
                    return stray
            elif not (entry.is_file(follow_symlinks=False) and inside in written):
                return f"a file ({inside})"
    return None


def _remove_previous(path: Path, where: str) -> None:
    try:
        shutil.rmtree(path)
    except OSError as exc:
        raise InputError(
            f"{where}: previews written, but the earlier ones left in {path} could not be "
            f"removed ({exc.strerror})"
        ) from exc


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    """Linux's ``renameat2``, which Python's ``os`` does not offer; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library older than glibc 2.28
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return cast(Callable[..., int], func)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (``RENAME_EXCHANGE``), so that each name always holds one
    of the two folders. False where the system or the file system cannot do it."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    a, b = os.fsencode(first), os.fsencode(second)
    if renameat2(_AT_FDCWD, a, _AT_FDCWD, b, _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), os.fspath(second))
