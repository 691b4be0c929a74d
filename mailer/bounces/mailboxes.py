"""Bounce mailboxes read-only: Maildir and mbox, each message capped at ``MAX_MESSAGE``."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path

from mailer.bounces.reader import MAX_MESSAGE
from mailer.errors import InputError


def read_maildir(path: Path) -> Iterator[bytes]:
    """Each message of a Maildir (new/ and cur/), at most ``MAX_MESSAGE`` octets of it.
    Read-only: nothing is moved, flagged or deleted. A missing Maildir fails at once."""
    if not (path / "cur").is_dir() or not (path / "new").is_dir():
        raise InputError(f"{path}: not a Maildir (no cur/ and new/ folders)")
    return _maildir_messages(path, mailbox.Maildir(path, factory=None, create=False))


def _maildir_messages(path: Path, box: mailbox.Maildir) -> Iterator[bytes]:
    try:
        for key in sorted(box.iterkeys()):
            try:
                handle = box.get_file(key)
            except (KeyError, FileNotFoundError):
                continue  # taken away meanwhile by the mail client
            with handle:
                yield handle.read(MAX_MESSAGE)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the Maildir ({exc.strerror})") from exc


def read_mbox(path: Path) -> Iterator[bytes]:
    """Each message of an mbox file, at most ``MAX_MESSAGE`` octets of it; never written.
    A missing or unreadable file fails at once."""
    if not path.is_file():
        raise InputError(f"{path}: no such mbox file")
    try:
        box = mailbox.mbox(path, factory=None, create=False)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the mbox file ({exc.strerror})") from exc
    return _mbox_messages(path, box)


def _mbox_messages(path: Path, box: mailbox.mbox) -> Iterator[bytes]:
    try:
        for key in box.iterkeys():
            # Not closed: a message's file shares the mailbox's, closed below.
            yield box.get_file(key).read(MAX_MESSAGE)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the mbox file ({exc.strerror})") from exc
    except mailbox.Error as exc:
        raise InputError(f"{path}: not an mbox file ({exc})") from exc
    finally:
        box.close()  # nothing pending, so nothing is written
