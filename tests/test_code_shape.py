"""A function reads top to bottom in one screen: none in the app's packages is 60 lines
or longer (from its ``def`` line to the last line of its body, decorators excluded)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sync_jobs", "webhook_app")
MAX_LINES = 60
"""The house rule's "about 60 lines": a function must stay under it."""


def function_lengths(path: Path) -> list[tuple[int, str, int]]:
    """``(lines, name, line)`` of every function and method in one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            end = node.end_lineno or node.lineno
            found.append((end - node.lineno + 1, node.name, node.lineno))
    return found


def long_functions() -> list[str]:
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for lines, name, line in function_lengths(path):
                if lines >= MAX_LINES:
                    where = path.relative_to(ROOT)
                    offenders.append(f"{where}:{line} {name}: {lines} lines")
    return sorted(offenders, key=lambda o: -int(o.rsplit(": ", 1)[1].split()[0]))


def test_the_length_counts_from_def_to_the_end_of_the_body(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("@decorated\ndef f(\n    a,\n):\n    x = 1\n\n    return x\n")
    assert function_lengths(module) == [(6, "f", 2)]


def test_no_function_is_60_lines_or_longer() -> None:
    offenders = long_functions()
    print("\n".join(offenders))
    assert not offenders, "functions of 60 lines or more:\n" + "\n".join(offenders)
