"""How long ``mailer --help`` and ``mailer digest --help`` take to start, as a user runs them.

Each command runs N times in a fresh ``python -m mailer`` process (the first run warms the
byte-code cache and is not counted); the median wall time is printed, with the modules
that ``import mailer.cli`` loads. Not a test: timings vary with the machine.

    .venv/bin/python bench/bench_startup.py [N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = (("--help",), ("digest", "--help"), ("init", "--help"))


def run_once(args: tuple[str, ...]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mailer", *args],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def imported_modules() -> int:
    code = "import sys; import mailer.cli; print(len(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True
    )
    return int(out.stdout)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 11
    bare = [run_bare() for _ in range(runs)]
    print(f"python -c pass:            median {statistics.median(bare) * 1000:6.0f} ms")
    for args in COMMANDS:
        run_once(args)
        times = [run_once(args) for _ in range(runs)]
        label = "mailer " + " ".join(args)
        print(
            f"{label:<26} median {statistics.median(times) * 1000:6.0f} ms "
            f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}, {runs} runs)"
        )
    print(f"modules loaded by `import mailer.cli`: {imported_modules()}")


def run_bare() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
