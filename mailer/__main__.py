"""Entry point for ``python -m mailer``."""

from mailer.cli import main

main()
