"""The core does no I/O: it must not import the libraries that do."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import sync_jobs.core

FORBIDDEN = ("flask", "githubkit", "redis", "sqlalchemy", "httpx", "rq", "psycopg")
CORE = Path(sync_jobs.core.__file__).parent


def test_core_sources_import_no_io_library() -> None:
    for source in CORE.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{source.name} imports {name}"


def test_importing_the_core_loads_no_io_library() -> None:
    modules = [f"sync_jobs.core.{p.stem}" for p in CORE.glob("*.py") if p.stem != "__init__"]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == ""


def test_core_has_a_readme_saying_it_does_no_io() -> None:
    assert "no I/O" in (CORE / "README.md").read_text()
