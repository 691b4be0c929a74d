"""Million-row list benchmark: `mailer lists validate` time and RSS, `digest --limit 10` RSS.

Usage: .venv/bin/python bench/bench_lists.py [--rows 1000000] [--keep DIR]

It writes a list of --rows rows (realistic addresses over a few thousand domains, with
0.1 % case-variant duplicates and 100 invalid rows) into a temporary folder, then runs each
command as a real subprocess and prints its wall time and peak RSS (ru_maxrss of that child,
from os.wait4; the RUSAGE_CHILDREN maximum is printed at the end). Targets, from issue 5:
validate <= 60 s, digest --limit 10 <= 150 MB.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INVALID_ROWS = 100
DUPLICATE_EVERY = 1000

FIRST = [
    "anna",
    "ben",
    "chloe",
    "dmitri",
    "emma",
    "farid",
    "grace",
    "hugo",
    "ines",
    "jonas",
    "kira",
    "liam",
    "mona",
    "noah",
    "olga",
]
LAST = [
    "martin",
    "chen",
    "durand",
    "ivanov",
    "garcia",
    "smith",
    "müller",
    "rossi",
    "novak",
    "kim",
    "silva",
    "berg",
]
CITIES = ["Northfield", "Riverside", "Hartley", "Mill Bridge", "Eastwick", "Lowmoor"]
POPULAR = ["gmail.com", "outlook.com", "yahoo.com", "icloud.com", "gmx.de", "proton.me"]


def write_list(path: Path, rows: int, seed: int = 5) -> None:
    rng = random.Random(seed)
    domains = POPULAR + [f"mail{k}.example-{k % 97}.org" for k in range(3000)]
    invalid_at = set(rng.sample(range(rows), INVALID_ROWS))
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,name,city\n")
        previous = ""
        for i in range(rows):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            if i in invalid_at:
                email = f"{first}.{last}{i}@@{rng.choice(domains)}"
            elif i % DUPLICATE_EVERY == DUPLICATE_EVERY - 1 and previous:
                email = previous.upper()
            else:
                domain = rng.choice(POPULAR) if rng.random() < 0.5 else rng.choice(domains)
                email = f"{first}.{last.replace('ü', 'u')}{i}@{domain}"
                if i % 7 == 0:
                    email = email.capitalize()
                previous = email
            out.write(f'{email},"{first.title()} {last.title()}",{rng.choice(CITIES)}\n')


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int, str]:
    """Run one command; return (seconds, peak RSS in MB, exit code, its summary line)."""
    out_path = cwd / "out.txt"
    with out_path.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    lines = out_path.read_text(encoding="utf-8", errors="replace").splitlines()
    summary = [line for line in lines if line.startswith(("Wrote", "Error", "lists/"))]
    return seconds, usage.ru_maxrss / 1024, proc.returncode, (summary or lines or [""])[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()

    if args.keep is None:
        with tempfile.TemporaryDirectory(prefix="bench-lists-") as tmp:
            bench(Path(tmp), args.rows)
    else:
        bench(args.keep, args.rows)


def bench(folder: Path, rows: int) -> None:
    (folder / "lists").mkdir(parents=True, exist_ok=True)
    big = folder / "lists" / "big.csv"
    start = time.perf_counter()
    write_list(big, rows)
    size = big.stat().st_size / 1e6
    print(f"wrote {rows:,} rows ({size:.1f} MB) in {time.perf_counter() - start:.1f} s")

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),
        "PYTHONPATH": str(REPO),
        "MAILER_LISTS_DIR": "lists",
    }
    mailer = [sys.executable, "-m", "mailer"]

    seconds, rss, code, last = run([*mailer, "lists", "validate", "big"], folder, env)
    print(f"lists validate: {seconds:.1f} s, peak RSS {rss:.0f} MB, exit {code}")
    print(f"  {last}")

    digest = [
        sys.executable,
        "-m",
        "mailer",
        "digest",
        "--list",
        "big",
        "--limit",
        "10",
        "--date",
        "2026-11-27",
        "--articles",
        str(REPO / "articles"),
        "--out",
        str(folder / "previews"),
    ]
    seconds, rss, code, last = run(digest, folder, env)
    print(f"digest --limit 10: {seconds:.1f} s, peak RSS {rss:.0f} MB, exit {code}")
    print(f"  {last}")
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"RUSAGE_CHILDREN ru_maxrss (largest child): {children:.0f} MB")


if __name__ == "__main__":
    main()
