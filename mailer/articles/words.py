"""Words: how a text is cut into words, what ends a sentence, jusText's stopword lists and
the language of a text (the one whose list covers most of its first words)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache


class Lazy:
    """A regex compiled when first used, so that importing the CLI stays quick."""

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.pattern, self.flags = pattern, flags
        self._compiled: re.Pattern[str] | None = None

    @property
    def compiled(self) -> re.Pattern[str]:
        if self._compiled is None:
            self._compiled = re.compile(self.pattern, self.flags)
        return self._compiled

    def match(self, text: str) -> re.Match[str] | None:
        return self.compiled.match(text)

    def fullmatch(self, text: str) -> re.Match[str] | None:
        return self.compiled.fullmatch(text)

    def search(self, text: str) -> re.Match[str] | None:
        return self.compiled.search(text)

    def sub(self, replacement: str, text: str, count: int = 0) -> str:
        return self.compiled.sub(replacement, text, count=count)


def wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


_WORD_RE = re.compile(r"[^\W_]+(?:['’.\-][^\W_]+)*")
LETTER_RE = re.compile(r"[^\W\d_]")
CLOSERS = "\"'”’»)]*_ "


def words_of(text: str) -> list[str]:
    return _WORD_RE.findall(text)


def is_sentence(text: str) -> bool:
    return text.rstrip(CLOSERS)[-1:] in (".", "!", "?", "…")


LANGUAGE_SAMPLE_WORDS = 3000  # the language is told from the first words only

# Languages tried, best first on a tie; each with its code for the date parser.
LANGUAGES: dict[str, str] = {
    "English": "en",
    "French": "fr",
    "German": "de",
    "Spanish": "es",
    "Italian": "it",
    "Portuguese": "pt",
    "Dutch": "nl",
    "Catalan": "ca",
    "Danish": "da",
    "Swedish": "sv",
    "Norwegian_Bokmal": "nb",
    "Finnish": "fi",
    "Polish": "pl",
    "Czech": "cs",
    "Slovak": "sk",
    "Hungarian": "hu",
    "Romanian": "ro",
    "Croatian": "hr",
    "Turkish": "tr",
    "Greek": "el",
    "Russian": "ru",
    "Ukrainian": "uk",
    "Indonesian": "id",
    "Welsh": "cy",
    "Irish": "ga",
}


def language_of(texts: Iterable[str]) -> str:
    """The language whose stoplist covers most of the text's first words."""
    sample: list[str] = []
    for text in texts:
        sample.extend(w.lower() for w in words_of(text[: LANGUAGE_SAMPLE_WORDS * 20]))
        if len(sample) >= LANGUAGE_SAMPLE_WORDS:
            break
    if not sample:
        return "English"
    index = _stopword_index()
    counts = [0] * len(LANGUAGES)
    for word in sample[:LANGUAGE_SAMPLE_WORDS]:
        for n in index.get(word, ()):
            counts[n] += 1
    best = max(range(len(counts)), key=lambda n: (counts[n], -n))
    return list(LANGUAGES)[best]


@cache
def stoplist(language: str) -> frozenset[str]:
    import justext  # slow to import (lxml): only once a text article is read

    return frozenset(word.lower() for word in justext.get_stoplist(language))


@cache
def _stopword_index() -> dict[str, tuple[int, ...]]:
    """Each stopword, and the languages (by their place in LANGUAGES) that list it."""
    index: dict[str, list[int]] = {}
    for n, language in enumerate(LANGUAGES):
        for word in stoplist(language):
            index.setdefault(word, []).append(n)
    return {word: tuple(ns) for word, ns in index.items()}
