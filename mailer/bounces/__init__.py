"""Bounce mail → suppressions: DSNs and the common other formats, matched by VERP tag or
Message-ID, acted on once.

A message in the bounce mailbox is read (``BounceReader.read``) into a ``Reading``:

- a DSN (``multipart/report; report-type=delivery-status``, RFC 3464) is parsed with the
  standard library; other formats (qmail, old Exchange...) go to ``flufl.bounce``'s
  detectors;
- an auto-reply (RFC 3834 ``Auto-Submitted``, ``X-Autoreply``, ``Precedence: auto_reply``...)
  is recognised and ignored;
- a failure is matched to what we sent by its VERP tag (in the DSN's own To, Delivered-To,
  X-Original-To..., or the returned headers' Return-Path), else by the returned Message-ID
  (``Resolver``); an unmatched failure is only reported, never acted on, so nobody can
  suppress an address by mailing us a DSN for it.

``scan`` acts on readings not seen before (``BounceStore``): a hard bounce suppresses the
address at once; a soft one is counted, and an address soft-bounced by ``soft_limit``
different campaigns is suppressed.

``reader`` reads one message, ``mailboxes`` reads Maildir and mbox (read-only), ``imap``
reads an IMAP folder over TLS and moves what was acted on to a done folder, ``actions``
holds the store and the scan.
"""

from mailer.bounces.actions import (
    RECORD_FILE,
    SOFT_LIMIT,
    BounceCounts,
    BounceStore,
    MemoryStore,
    SqliteStore,
    Summary,
    Suppressor,
    bounce_counts,
    scan,
)
from mailer.bounces.imap import IMAPS_PORT, read_imap
from mailer.bounces.mailboxes import read_maildir, read_mbox
from mailer.bounces.reader import (
    MAX_MESSAGE,
    Bounce,
    BounceReader,
    LedgerResolver,
    NoResolver,
    Reading,
    Resolver,
    auto_reply_marker,
    source_id,
)

__all__ = [
    "IMAPS_PORT",
    "MAX_MESSAGE",
    "RECORD_FILE",
    "SOFT_LIMIT",
    "Bounce",
    "BounceCounts",
    "BounceReader",
    "BounceStore",
    "LedgerResolver",
    "MemoryStore",
    "NoResolver",
    "Reading",
    "Resolver",
    "SqliteStore",
    "Summary",
    "Suppressor",
    "auto_reply_marker",
    "bounce_counts",
    "read_imap",
    "read_maildir",
    "read_mbox",
    "scan",
    "source_id",
]
