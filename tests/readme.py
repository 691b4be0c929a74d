"""The README, as the tests that keep it true read it."""

from __future__ import annotations

import re

from tests.conftest import REPO

README = REPO / "README.md"


def quick_start() -> list[str]:
    """The first two ``sh`` blocks under "Quick start": install and dry run, then the tests."""
    text = README.read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1]
    return re.findall(r"```sh\n(.+?)\n```", quick, re.DOTALL)[:2]
