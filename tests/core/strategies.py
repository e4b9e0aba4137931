"""Hypothesis strategies for flat git trees: small alphabets so collisions, renames,
duplicates and file/directory swaps happen often."""

from __future__ import annotations

from hypothesis import strategies as st

from sync_jobs.core.tree import FileEntry

NAMES = ["a", "b", "c", "d é", "x.txt"]
MODES = ["100644", "100755", "120000", "160000"]
SHAS = [f"{n:040x}" for n in range(1, 7)]

paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map("/".join)
entries = st.builds(
    lambda mode, sha: FileEntry(mode, sha, None if mode == "160000" else len(sha)),
    st.sampled_from(MODES),
    st.sampled_from(SHAS),
)


def _consistent(tree: dict[str, FileEntry]) -> dict[str, FileEntry]:
    """Drop paths that are also a directory of another path (git cannot have both)."""
    directories = {p.rsplit("/", i)[0] for p in tree for i in range(1, p.count("/") + 1)}
    return {p: e for p, e in tree.items() if p not in directories}


flat_trees = st.dictionaries(paths, entries, max_size=25).map(_consistent)
