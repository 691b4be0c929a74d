"""The house reads one way: every module imports only modules below it, and the front doors
(``cli/``) import only public names. See ../shared/STYLE.md (and docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mailer"

# Ground first, front doors last. A module may import only modules listed before it (or
# the inside of its own package, such as mailer.articles.* or mailer.cli.*).
ORDER = [
    # 1. ground
    "mailer.errors",
    "mailer.models",
    "mailer.headers",
    # 2. parts
    "mailer.csvfile",
    "mailer.tokens",
    "mailer.dkim",
    "mailer.verp",
    "mailer.subscribers",
    "mailer.settings",
    "mailer.suppression_list",
    "mailer.suppression",
    "mailer.articles",
    "mailer.digest",
    "mailer.render",
    "mailer.messages",
    "mailer.archive",
    # 3. machinery
    "mailer.transports",
    "mailer.ledger",
    "mailer.delivery",
    "mailer.pipeline",
    # 4. use cases
    "mailer.campaign",
    "mailer.forward",  # one article to a friend: runs through the send use case
    "mailer.bounces",
    "mailer.importer",
    "mailer.scaffold",  # `mailer init`: a new newsletter folder
    # 5. front doors
    "mailer.web",
    "mailer.cli",
    "mailer.__main__",
]


def rank(module: str) -> int:
    for index, name in enumerate(ORDER):
        if module == name or module.startswith(name + "."):
            return index
    raise AssertionError(f"{module} has no place in ORDER: add it where it belongs")


def group(module: str) -> str:
    return next(n for n in ORDER if module == n or module.startswith(n + "."))


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != "mailer":
            found.append((name, path))
    return found


def imports(path: Path) -> list[tuple[str, list[str]]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mailer"):
            out.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("mailer")]
    return out


@pytest.mark.parametrize(("name", "path"), modules(), ids=[m for m, _ in modules()])
def test_a_module_imports_only_modules_below_it(name: str, path: Path) -> None:
    for imported, names in imports(path):
        # ``from mailer import x`` imports the submodule x
        if imported == "mailer":
            names = [n for n in names if not n.startswith("__")]  # the package's own data
        targets = [f"mailer.{n}" for n in names] if imported == "mailer" else [imported]
        for target in targets:
            if group(target) == group(name):
                continue  # inside its own package
            assert rank(target) < rank(name), f"{name} imports {target}, which is above it"


@pytest.mark.parametrize(
    ("name", "path"),
    [m for m in modules() if m[0].startswith("mailer.cli")],
    ids=[m for m, _ in modules() if m.startswith("mailer.cli")],
)
def test_the_command_line_uses_only_public_names_of_the_library(name: str, path: Path) -> None:
    for imported, names in imports(path):
        if imported.startswith("mailer.cli"):
            continue
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"{name} imports private {private} from {imported}"
        assert not any(part.startswith("_") for part in imported.split(".")), imported


def test_no_module_is_over_500_lines() -> None:
    big = {
        str(path.relative_to(PACKAGE.parent)): n
        for _, path in modules()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert not big, big


def test_the_ledger_is_a_package_of_modules_under_400_lines() -> None:
    """Issue 14: ledger.py is gone, and no module of mailer/ledger/ is over 400 lines."""
    assert not (PACKAGE / "ledger.py").exists()
    big = {
        path.name: n
        for path in (PACKAGE / "ledger").glob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 400
    }
    assert not big, big
