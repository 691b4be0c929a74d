"""The one small error tree: every expected failure is a MailerError with an exit code."""

from __future__ import annotations

# Exit codes, documented in the README.
EXIT_OK = 0
EXIT_INCOMPLETE = 1  # some recipients failed or were deferred
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


class TemplateError(InputError):
    """A template failed to compile or render; the message names template and line."""


class HeaderError(InputError):
    """A value destined for a mail header is unsafe (control characters, injection)."""


class TokenError(MailerError):
    """An unsubscribe token is malformed, forged or altered."""


class GuardError(MailerError):
    """A forward was refused by one of its guards (quota, suppression, size)."""


class DeliveryError(MailerError):
    """The transport cannot go on at all: stop the run at once, no retry storm."""

    exit_code = EXIT_FATAL
