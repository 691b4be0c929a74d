"""People's names in bylines: ``By Priya Nair``, ``Priya Nair, Transport correspondent``,
``Words: Tom Baker | Photos: Jess Lin``, a note on the writer under the story; in English,
French, German and Spanish (and often others, by shape)."""

from __future__ import annotations

import re

from mailer.articles.words import LETTER_RE, Lazy, is_sentence, wordset

_I = re.IGNORECASE
BYLINE_START_RE = Lazy(
    r"(?:(?:written|posted|words|story|text|reported|published|photos?( and words)?"
    r"|interview(ed)?|interviews?)\s+by|words|interview|propos recueillis par|entretien avec"
    r"|by|par|[ée]crit par|publi[ée] par|von|por|escrito por|publicado por|door|di"
    r"|autor(?:in)?|author|auteur|texte|text|redacci[óo]n)\s*:?\s+",
    _I,
)
_BIO_RE = Lazy(r"\s+(is|was|est|ist|es|è|writes|[ée]crit|schreibt|escribe)\b", _I)
_BIO_WORDS_RE = Lazy(
    r"\b(author|writer|based in|founder|planner|researcher|professor|lecturer)", _I
)
_ROLE_RE = Lazy(
    r"\b(reporter|correspondent|editor|journalist|writer|columnist|contributor|staff|critic"
    r"|r[ée]dact|journaliste|correspondant|envoy[ée]|korrespondent|redakteur|redaktion"
    r"|autorin|periodista|corresponsal|redactor|redactora)",
    _I,
)
_NAME_PARTICLES = wordset("de van von der den da di du le la del dos das y and & et und e")
_NOT_NAMES = wordset(
    """monday tuesday wednesday thursday friday saturday sunday january february march april may
    june july august september october november december today yesterday the this that these
    lundi mardi mercredi jeudi vendredi samedi dimanche montag dienstag mittwoch donnerstag
    freitag samstag sonntag lunes martes miércoles jueves viernes sábado domingo"""
)


def byline_name(line: str) -> str | None:
    """The name in ``By Priya Nair``, ``Posted by Sam Ortiz · 5 min read``, ``Par Marie
    Dupont``; None when the line is no byline (``By 2030, the town...``)."""
    match = BYLINE_START_RE.match(line)
    if match is None:
        return None
    return leading_name(line[match.end() :], whole=True)


def bio_name(text: str) -> str | None:
    """The name in a note on the writer under a story: ``Priya Raman is a writer and urban
    planner based in Bristol.``, ``Anna Weber ist Redakteurin im Lokalressort.``"""
    if len(text.split()) > 40 or not is_sentence(text):
        return None
    name = leading_name(text, whole=False)
    if name is None or len(name.split()) < 2:
        return None
    rest = text[len(name) :]
    if not _BIO_RE.match(rest) or not (_ROLE_RE.search(rest) or _BIO_WORDS_RE.search(rest)):
        return None
    return name


def signature_name(text: str) -> str | None:
    """The name in a signature under a story or a letter: ``— Anna Corbett``."""
    if len(text.split()) > 5:
        return None
    name = leading_name(text.lstrip("—–-~ "), whole=True)
    return name if name is not None and len(name.split()) >= 2 else None


def is_role(line: str) -> bool:
    """``Local democracy reporter``, ``Staff writer``: a writer's job on a line of its own."""
    return len(line.split()) <= 6 and not is_sentence(line) and bool(_ROLE_RE.search(line))


def name_with_role(line: str) -> str | None:
    """``Priya Nair, Transport correspondent``, ``Kim Ames | Reporter`` or ``Helen Pidd
    North of England editor``."""
    if len(line.split()) > 10 or not _ROLE_RE.search(line):
        return None
    parts = re.split(r"\s*[,|•·–—]\s*", line, maxsplit=1)
    if len(parts) == 2 and _ROLE_RE.search(parts[1]):
        name = leading_name(parts[0], whole=True)
        return name if name is not None and len(name.split()) >= 2 else None
    name = leading_name(line, whole=False)
    if name is None or len(name.split()) < 2 or _ROLE_RE.search(name):
        return None
    rest = line[len(name) :].split()
    if not rest or (not rest[0][:1].islower() and not _ROLE_RE.match(rest[0])):
        return None
    # "Helen Pidd North of England editor": the name is the first two words.
    return " ".join(name.split()[:2]) if rest[0][:1].islower() else name


def leading_name(rest: str, *, whole: bool) -> str | None:
    """The capitalised words a line starts with (a person's name, up to a separator); with
    ``whole``, None unless the name fills its part of the line."""
    chunk = re.split(r"\s*[,|•·–—(;:/]\s*|\s+-\s+|\s+(?:on|le|am|el|the|at|à|um|in)\s+", rest)[0]
    tokens = chunk.split()
    name: list[str] = []
    for token in tokens:
        bare = token.strip(".'’")
        if (bare.lower() in _NAME_PARTICLES and name) or (
            bare[:1].isupper() and LETTER_RE.match(bare) and bare.lower() not in _NOT_NAMES
        ):
            name.append(token)
        else:
            break
    while name and name[-1].lower() in _NAME_PARTICLES:
        name.pop()
    if not name or len(name) > 6 or (whole and len(name) < len(tokens)):
        return None
    rest_after = rest[len(chunk) :]
    if whole and is_sentence(rest_after) and len(rest_after.split()) > 6:
        return None  # "By Tuesday, the council had approved the plan."
    text = " ".join(name)
    if text.isupper() and len(text) > 3:  # "JO BELL AND SAM LEE"
        return " ".join(w.lower() if w.lower() in _NAME_PARTICLES else w.title() for w in name)
    return text
