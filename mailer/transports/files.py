"""The files transport: previews. Each message becomes an ``.eml`` file; the folder appears
whole (written to a temporary folder, then renamed into place) or not at all."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Awaitable, Mapping
from pathlib import Path

from mailer.errors import InputError
from mailer.models import Outgoing
from mailer.transports.base import Reply


def eml_name(index: int, email: str) -> str:
    """``000001-alice_example.org.eml``: no separators, no leading dots, bounded length."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", email.replace("@", "_at_"))[:80].lstrip(".")
    return f"{index:06d}-{safe or 'recipient'}.eml"


class FilesTransport:
    """Writes previews into ``folder`` atomically."""

    name = "files"

    def __init__(self, folder: Path, *, extras: Mapping[str, str | bytes] | None = None) -> None:
        self.folder = folder
        self._extras = dict(extras or {})
        self._tmp: Path | None = None
        self.written = 0

    def _staging(self) -> Path:
        if self._tmp is None:
            parent = self.folder.parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
                self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.", dir=parent))
            except OSError as exc:
                raise InputError(
                    f"{parent}: cannot create preview folder ({exc.strerror})"
                ) from exc
        return self._tmp

    async def open_channel(self) -> FilesTransport:
        self._staging()
        return self

    async def send(self, message: Outgoing, ready: Awaitable[None] | None = None) -> Reply:
        if ready is not None:
            await ready
        path = self._staging() / eml_name(message.index, message.recipient.email)
        with path.open("wb") as handle:
            handle.write(message.data)
        self.written += 1
        return Reply(250, f"written to {path.name}")

    async def close(self) -> None:
        return None

    async def finish(self, *, complete: bool) -> None:
        tmp = self._staging()
        if not complete:
            shutil.rmtree(tmp, ignore_errors=True)
            self._tmp = None
            return
        try:
            for name, content in self._extras.items():
                data = content.encode("utf-8") if isinstance(content, str) else content
                (tmp / name).write_bytes(data)
            os.chmod(tmp, 0o755)
            if self.folder.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.old.", dir=tmp.parent))
                os.replace(self.folder, old / "previous")
                os.replace(tmp, self.folder)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, self.folder)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise InputError(f"{self.folder}: cannot write previews ({exc.strerror})") from exc
        finally:
            self._tmp = None
