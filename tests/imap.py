"""A throwaway IMAP server for tests: Debian's Dovecot, started in the foreground in a temp
dir with its own config, IMAP over TLS only (a certificate from a ``trustme`` CA), one
passwd-file user with a Maildir; stopped and removed when done.

``imap_server()`` yields an ``ImapServer``: where it listens, the user, the CA file that
verifies it, and helpers that append fixtures and look at folders through IMAP itself.
As root, Dovecot's own users run its parts (``dovecot``, ``dovenull``) and the mail user is
``nobody``; as anyone else, everything runs as that user.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme

DOVECOT = "/usr/sbin/dovecot"
HOST = "127.0.0.1"
USER = "bounces"


@dataclass
class ImapServer:
    host: str
    port: int
    username: str
    password: str
    ca_file: Path  # the CA that signed the server's certificate
    root: Path

    @contextlib.contextmanager
    def client(self) -> Iterator[imaplib.IMAP4_SSL]:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        client = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=context, timeout=10)
        try:
            client.login(self.username, self.password)
            yield client
        finally:
            client.logout()

    def append(self, messages: Iterable[bytes], folder: str = "INBOX") -> None:
        with self.client() as client:
            for raw in messages:
                typ, data = client.append(folder, None, None, raw)
                assert typ == "OK", data

    def folder(self, name: str) -> list[bytes]:
        """The messages in a folder (not flagged deleted), whole; [] when it does not exist."""
        with self.client() as client:
            typ, _ = client.select(f'"{name}"', readonly=True)
            if typ != "OK":
                return []
            typ, data = client.uid("SEARCH", "UNDELETED")
            out = []
            for uid in (data[0] or b"").split():
                typ, fetched = client.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
                out += [item[1] for item in fetched if isinstance(item, tuple)]
            return out

    def folders(self) -> set[str]:
        with self.client() as client:
            _, data = client.list()
        return {
            line.decode().rsplit(" ", 1)[-1].strip('"') for line in data if isinstance(line, bytes)
        }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _config(root: Path, port: int, capability: str | None) -> str:
    if os.geteuid() == 0:
        internal, login = "dovecot", "dovenull"
    else:
        internal = login = pwd.getpwuid(os.geteuid()).pw_name
    lines = [
        f"base_dir = {root}/run",
        f"state_dir = {root}/state",
        "log_path = /dev/stderr",
        "protocols = imap",
        f"listen = {HOST}",
        "ssl = required",
        f"ssl_cert = <{root}/cert.pem",
        f"ssl_key = <{root}/key.pem",
        "ssl_min_protocol = TLSv1.2",
        "auth_mechanisms = plain",
        "auth_failure_delay = 0",
        f"login_trusted_networks = {HOST}/32",
        f"default_internal_user = {internal}",
        f"default_login_user = {login}",
        "first_valid_uid = 1",
        "mail_location = maildir:~/Maildir",
        "passdb {",
        "  driver = passwd-file",
        f"  args = scheme=PLAIN username_format=%u {root}/passwd",
        "}",
        "userdb {",
        "  driver = passwd-file",
        f"  args = username_format=%u {root}/passwd",
        "}",
        "namespace inbox {",
        "  inbox = yes",
        "  separator = /",
        "}",
        "service imap-login {",
        "  inet_listener imap {",
        "    port = 0",
        "  }",
        "  inet_listener imaps {",
        f"    port = {port}",
        "    ssl = yes",
        "  }",
        "}",
    ]
    if os.geteuid() != 0:  # no chroot, no user switching without root
        lines += ["service imap-login {", "  chroot =", "}", "service anvil {", "  chroot =", "}"]
    if capability is not None:
        lines.append(f"imap_capability = {capability}")
    return "\n".join(lines) + "\n"


def _ready(port: int, process: subprocess.Popen[bytes], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@contextlib.contextmanager
def imap_server(*, capability: str | None = None) -> Iterator[ImapServer]:
    """A running Dovecot on 127.0.0.1 (IMAPS on a free port) in a new temp dir; stopped and
    removed afterwards. ``capability`` replaces what the server announces after login
    (e.g. without MOVE, to take the copy-and-expunge path)."""
    root = Path(tempfile.mkdtemp(prefix="mailer-imap-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        root.chmod(0o755)  # Dovecot's own users read the config, passwd file and keys here
        ca = trustme.CA()
        cert = ca.issue_cert(HOST, "localhost")
        cert.private_key_pem.write_to_path(str(root / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
        ca.cert_pem.write_to_path(str(root / "ca.pem"))
        owner = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        home = root / "home" / USER
        home.mkdir(parents=True)
        os.chown(home, owner.pw_uid, owner.pw_gid)
        password = secrets.token_urlsafe(12)
        (root / "passwd").write_text(
            f"{USER}:{{PLAIN}}{password}:{owner.pw_uid}:{owner.pw_gid}::{home}::\n"
        )
        for attempt in range(3):  # the free port may be taken before Dovecot binds it
            port = _free_port()
            (root / "dovecot.conf").write_text(_config(root, port, capability))
            log = (root / "dovecot.log").open("ab")
            process = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=root,
                start_new_session=True,
            )
            log.close()
            if _ready(port, process, time.monotonic() + 30):
                break
            _stop(process)
            process = None
            if attempt == 2:
                raise RuntimeError(
                    "Dovecot did not start: " + (root / "dovecot.log").read_text()[-2000:]
                )
        yield ImapServer(HOST, port, USER, password, root / "ca.pem", root)
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(root, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the master (it stops its children), then wait; SIGKILL the group if stuck."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
