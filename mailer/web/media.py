"""``/media/<path>``: the images kept beside the articles that messages and pages show.

Only an image that a current article or an archived issue names is served, read from the
articles folder and checked again each time (inside it, opened without following any link,
a regular file of at most 5 MiB, an image of its type by its first bytes). Any other path
is not found, whatever is in the folder: a picture no article names yet is not published.

Both lists are kept between requests. The current articles' images are read again at most
every ``CURRENT_SECONDS``, each file only when it changed, by one request while the others
use the list as it was; the archived issues' images whenever a record changes. A broken
article file is left out of the list (``mailer digest`` names it), not the end of it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from mailer.archive import Store, local_media
from mailer.articles import article_files, compile_clutter, image_type, load_article, read_image
from mailer.errors import MailerError
from mailer.headers import is_web_url
from mailer.settings import Settings

log = logging.getLogger("mailer.web")

# An image keeps its path when it is replaced: a day, then a check with its ETag.
MEDIA_CACHE = "public, max-age=86400"
# How long the list of the current articles' images is kept before the folder is read again.
CURRENT_SECONDS = 60.0
MAX_WARNED = 1000  # distinct (path, problem) pairs logged; then they are not logged again

_Stamp = tuple[int, int, int]  # inode, size, mtime: what changes when a file is replaced


@dataclass(frozen=True, slots=True)
class _Served:
    stamp: _Stamp
    etag: str


class Media:
    """The images ``/media/`` may serve (see the module's notes)."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._clutter = compile_clutter(settings.clutter_patterns)
        self._lock = threading.Lock()
        self._files: dict[Path, tuple[_Stamp, str | None]] = {}  # article file: its image
        self._current: frozenset[str] = frozenset()
        self._read_at = time.monotonic()
        self._reading = False
        self._archived: tuple[object, frozenset[str]] = ((), frozenset())
        self._etags: dict[str, _Served] = {}
        self._warned: set[tuple[str, str]] = set()
        self._current = self._read_current()  # before the first request

    def answer(self, request: Request) -> Response | None:
        """The image asked for, a 304 if the client has it, or ``None`` (not found)."""
        path = str(request.path_params["path"])
        if path not in self._current_images() and path not in self._archived_images():
            return None
        try:
            stamp = _stamp(self.settings.articles_dir / path)
            known = self._etags.get(path)
            if known is not None and known.stamp == stamp and _matches(request, known.etag):
                return Response(status_code=304, headers=_headers(known.etag))
            data = read_image(self.settings.articles_dir, path)
        except (ValueError, OSError) as exc:
            self._warn(path, str(exc))
            return None
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        self._etags[path] = _Served(stamp, etag)  # only named images get here: few
        if _matches(request, etag):
            return Response(status_code=304, headers=_headers(etag))
        return Response(data, media_type=image_type(path), headers=_headers(etag))

    def _warn(self, path: str, problem: str) -> None:
        if (path, problem) not in self._warned and len(self._warned) < MAX_WARNED:
            self._warned.add((path, problem))
            log.warning("media: image %s", problem)

    # --- the images of the archived issues --------------------------------------------

    def _archived_images(self) -> frozenset[str]:
        stamp = self._records_stamp()
        seen, images = self._archived
        if seen == stamp:
            return images
        found: set[str] = set()
        for day in self.store.dates():
            try:
                issue = self.store.load(day)
            except MailerError:  # a damaged record: its pages say so; its images are not ours
                continue
            found.update(local_media([issue] if issue is not None else []))
        self._archived = (stamp, frozenset(found))
        return self._archived[1]

    def _records_stamp(self) -> object:
        try:
            with os.scandir(self.store.issues_dir) as entries:
                return tuple(sorted((e.name, *_stamp(Path(e.path))) for e in entries))
        except OSError:
            return ()

    # --- the images of the current articles -------------------------------------------

    def _current_images(self) -> frozenset[str]:
        with self._lock:
            if self._reading or time.monotonic() - self._read_at < CURRENT_SECONDS:
                return self._current
            self._reading = True  # the others go on with the list as it was
        current = self._current
        try:
            current = self._read_current()
        finally:
            with self._lock:
                self._current = current
                self._read_at = time.monotonic()
                self._reading = False
        return current

    def _read_current(self) -> frozenset[str]:
        """The local images the article files name now; a file is read again only when it
        changed. (Saved pages are left out: their images are always web addresses.)"""
        settings = self.settings
        folder = settings.articles_dir
        files: dict[Path, tuple[_Stamp, str | None]] = {}
        if not folder.is_dir():  # a site that only serves the archive
            return frozenset()
        try:
            paths = [p for p in article_files(folder) if p.suffix.lower() != ".html"]
        except MailerError as exc:
            self._warn("(articles)", exc.message)
            return self._current
        for path in paths:
            try:
                stamp = _stamp(path)
            except OSError:
                continue
            known = self._files.get(path)
            if known is not None and known[0] == stamp:
                files[path] = known
                continue
            try:
                article = load_article(
                    path,
                    clutter=self._clutter,
                    base_url=settings.article_base_url,
                    zone=settings.zone,
                    folder=folder,
                )
            except MailerError as exc:  # a broken file: `mailer digest` names it too
                self._warn(str(path), exc.message)
                continue
            image = article.image if article.image and not is_web_url(article.image) else None
            files[path] = (stamp, image)
        self._files = files
        return frozenset(image for _, image in files.values() if image)


def _stamp(path: Path) -> _Stamp:
    info = os.stat(path)
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def _headers(etag: str) -> dict[str, str]:
    return {"Cache-Control": MEDIA_CACHE, "ETag": etag}


def _matches(request: Request, etag: str) -> bool:
    """Whether If-None-Match names ``etag`` (weakly, as RFC 9110 says for GET), or is ``*``."""
    header = request.headers.get("if-none-match", "")
    asked = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in asked or etag in asked
