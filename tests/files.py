"""Reading back what a command wrote: a CSV file's rows, and temporary files it left behind."""

from __future__ import annotations

import csv
from pathlib import Path


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def leftovers(folder: Path) -> list[str]:
    """Temporary files of an atomic rewrite (``.<name>.tmp``) still in ``folder``."""
    return sorted(p.name for p in folder.glob(".*.tmp"))
