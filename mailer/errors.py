"""The one error tree: every expected failure the library raises, each with its exit code.

    MailerError                 exit 2 unless a subclass says otherwise
    ├── ConfigError             a setting or flag has a wrong value
    ├── InputError              an input file or value is broken (names file and line)
    │   ├── ValueRefused        one value (an address, a name) is not acceptable
    │   ├── TemplateError       a template failed to compile or render
    │   └── HeaderError         a value meant for a mail header is unsafe
    ├── TokenError              an unsubscribe token is malformed, forged or altered
    ├── GuardError              a forward was refused by one of its guards
    ├── EmptyAudience           a campaign would have nobody to send to
    ├── FetchError              exit 3: a feed or page could not be fetched (mailer import)
    ├── DeliveryError           exit 3: the run cannot go on (auth, TLS, the relay refusing us)
    │   └── TransportError      a connection broke mid-message (the engine retries or judges)
    └── LedgerError             exit 3: the ledger cannot be opened, read or written
        └── LedgerBusy          another run holds the ledger

A traceback means a bug: anything else that can go wrong is one of these.
"""

from __future__ import annotations

# Exit codes, documented in the README.
EXIT_OK = 0
EXIT_INCOMPLETE = 1  # some recipients failed, were deferred or are unknown
EXIT_USAGE = 2  # bad input, usage or configuration
EXIT_FATAL = 3  # the run stopped: auth, TLS, unreachable server, relay refusing us
EXIT_RESUMABLE = 75  # EX_TEMPFAIL: interrupted; run the same command again to resume


class MailerError(Exception):
    """Base class: the CLI prints ``Error: <message>`` (plus a hint) and exits."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(MailerError):
    """A setting or flag has a wrong value."""


class InputError(MailerError):
    """An input file (article, list, template) is broken; the message names file and line."""


class ValueRefused(InputError, ValueError):
    """One value (an address, a name) is not acceptable; also a ``ValueError``, so that a
    reader that skips bad rows can catch it as one."""


class TemplateError(InputError):
    """A template failed to compile or render; the message names template and line."""


class HeaderError(InputError):
    """A value destined for a mail header is unsafe (control characters, injection)."""


class TokenError(MailerError):
    """An unsubscribe token is malformed, forged or altered."""


class GuardError(MailerError):
    """A forward was refused by one of its guards (quota, suppression, size)."""


class EmptyAudience(MailerError):
    """A campaign would start with nobody to send to; nothing was frozen."""


class DeliveryError(MailerError):
    """The transport cannot go on at all: stop the run at once, no retry storm."""

    exit_code = EXIT_FATAL


class TransportError(DeliveryError):
    """A connection broke mid-message; the delivery engine retries it or judges it unknown.
    It reaches a caller only from a single probe (``mailer check``)."""


class FetchError(MailerError):
    """A feed or page could not be fetched: refused, timed out, an HTTP error, too big."""

    exit_code = EXIT_FATAL


class LedgerError(MailerError):
    """The ledger cannot be opened, read or written."""

    exit_code = EXIT_FATAL


class LedgerBusy(LedgerError):
    """Another process holds the ledger for writing (a send is running)."""


class Interrupted(BaseException):
    """SIGTERM or SIGHUP outside a send loop: unwinds the command like Ctrl-C
    (``KeyboardInterrupt``), so that nothing is left half-done; the exit code is 75."""
