"""Accuracy of reading articles: title, summary and author on the page corpus.

    .venv/bin/python bench/bench_articles.py                     # tests/corpus
    .venv/bin/python bench/bench_articles.py --corpus DIR        # any folder of pages
    .venv/bin/python bench/bench_articles.py --fields title,summary

Reads every ``.txt`` and ``.html`` page in the folder with ``mailer.articles.load_article``
and scores it against the folder's ``expected.json`` (file name -> title, first_paragraph,
author, url, date; see ``tests/corpus/score.py`` for the rules). It prints the accuracy per
field, overall and per format, then every miss (file: field: expected vs got) and the load
time per page. url and date are counted only on pages whose expected value is not null.
A page the loader refuses is a miss on every field. Issue 16 aims at 100 %; the test
``tests/test_corpus.py`` holds the floor. It is a report: it always exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the corpus scorer lives with the tests
    sys.path.insert(0, str(REPO))

from tests.corpus.score import CORPUS, EXTRA_FIELDS, FIELDS, PAGE_SUFFIXES, Score, score  # noqa: E402


def figure(result: Score, name: str, suffix: str | None = None) -> str:
    right, scored = result.counts(name, suffix)
    if not scored:
        return "        -"
    return f"{right:>3}/{scored:<3} {100 * right / scored:5.1f} %"


def report(result: Score, names: tuple[str, ...], wall: float) -> None:
    readings = result.readings
    by_suffix = {s: sum(r.suffix == s for r in readings) for s in PAGE_SUFFIXES}
    refused = sum(r.error is not None for r in readings)
    print(
        f"corpus: {result.folder} — {len(readings)} pages "
        f"({', '.join(f'{n} {s}' for s, n in by_suffix.items())}), {refused} refused by the loader"
    )
    print()
    print(f"{'field':<9} {'all':>15}   {'.txt':>15}   {'.html':>15}")
    for name in names:
        extra = "  (pages that have one)" if name in EXTRA_FIELDS else ""
        cells = "   ".join(figure(result, name, s) for s in (None, *PAGE_SUFFIXES))
        print(f"{name:<9} {cells}{extra}")
    print()
    misses = result.misses(names)
    print(f"misses: {len(misses)}")
    for line in misses:
        print(f"  {line}")
    print()
    print("load time per page:")
    first = {next((r.name for r in readings if r.suffix == s), None) for s in PAGE_SUFFIXES}
    for reading in sorted(readings, key=lambda r: -r.seconds):
        mark = "  (refused)" if reading.error else ""
        if reading.name in first:
            mark += f"  (first {reading.suffix} read: includes one-time imports)"
        print(f"  {reading.seconds * 1000:8.1f} ms  {reading.name}{mark}")
    times = [r.seconds * 1000 for r in readings]
    if times:
        print(
            f"  total {sum(times):.0f} ms, median {statistics.median(times):.1f} ms, "
            f"max {max(times):.1f} ms (wall {wall:.2f} s with imports and first-use setup)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus",
        type=Path,
        default=CORPUS,
        help="folder of .txt/.html pages with an expected.json (default: tests/corpus)",
    )
    parser.add_argument(
        "--fields",
        default=",".join(FIELDS + EXTRA_FIELDS),
        help="comma-separated fields to report (default: title,summary,author,url,date)",
    )
    args = parser.parse_args()
    names = tuple(n.strip() for n in args.fields.split(",") if n.strip())
    unknown = [n for n in names if n not in FIELDS + EXTRA_FIELDS]
    if unknown:
        print(f"unknown field(s) {', '.join(unknown)}; choose from {FIELDS + EXTRA_FIELDS}")
        return 0
    start = time.perf_counter()
    try:
        result = score(args.corpus, catch_all=True)
    except (OSError, ValueError) as exc:  # no such folder, no or broken expected.json
        print(f"cannot score {args.corpus}: {exc}")
        return 0
    report(result, names, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
