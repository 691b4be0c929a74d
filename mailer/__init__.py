"""mailer: weekly digests and send-to-a-friend mail from article files."""

__version__ = "0.1.0"
