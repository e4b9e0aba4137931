from __future__ import annotations

from hypothesis import given

from sync_jobs.core.diff import ChangeKind, Rename, apply_delta, classify, diff_flat
from sync_jobs.core.tree import FileEntry
from tests.core.strategies import flat_trees

A, B = "a" * 40, "b" * 40


@given(flat_trees, flat_trees)
def test_old_tree_plus_delta_is_new_tree(old: dict, new: dict) -> None:
    assert apply_delta(old, diff_flat(old, new)) == new


@given(flat_trees, flat_trees)
def test_delta_is_sorted_and_only_lists_differences(old: dict, new: dict) -> None:
    delta = diff_flat(old, new)
    paths = [c.path for c in delta.changes]
    assert paths == sorted(set(paths))
    assert set(paths) == {p for p in old.keys() | new.keys() if old.get(p) != new.get(p)}


@given(flat_trees)
def test_no_change_is_an_empty_delta(tree: dict) -> None:
    assert not diff_flat(tree, tree)


@given(flat_trees, flat_trees)
def test_renames_pair_a_removed_and_an_added_path_of_the_same_blob(old: dict, new: dict) -> None:
    delta = diff_flat(old, new)
    kinds = {c.path: c.kind for c in delta.changes}
    seen_old, seen_new = set(), set()
    for rename in delta.renames:
        assert kinds[rename.old_path] is ChangeKind.REMOVED
        assert kinds[rename.new_path] is ChangeKind.ADDED
        assert old[rename.old_path].sha == new[rename.new_path].sha == rename.sha
        assert rename.old_path not in seen_old and rename.new_path not in seen_new
        seen_old.add(rename.old_path)
        seen_new.add(rename.new_path)


def test_every_kind_of_change_is_classified() -> None:
    file, exe = FileEntry("100644", A, 1), FileEntry("100755", A, 1)
    assert classify(None, file) is ChangeKind.ADDED
    assert classify(file, None) is ChangeKind.REMOVED
    assert classify(file, FileEntry("100644", B, 2)) is ChangeKind.MODIFIED
    assert classify(file, exe) is ChangeKind.MODE_CHANGED
    assert classify(file, FileEntry("100755", B, 2)) is ChangeKind.MODIFIED
    assert classify(file, FileEntry("120000", A, 1)) is ChangeKind.TYPE_CHANGED
    assert classify(FileEntry("120000", A, 1), FileEntry("160000", A)) is ChangeKind.TYPE_CHANGED
    assert classify(file, file) is None


def test_a_move_is_a_rename_and_copies_stay_additions() -> None:
    old = {"src/x.py": FileEntry("100644", A, 1)}
    new = {"lib/x.py": FileEntry("100644", A, 1), "lib/y.py": FileEntry("100644", A, 1)}
    delta = diff_flat(old, new)
    assert delta.renames == (Rename("src/x.py", "lib/x.py", A),)
    assert delta.count(ChangeKind.ADDED) == 2 and delta.count(ChangeKind.REMOVED) == 1


def test_a_symlink_does_not_pair_with_a_file_of_the_same_blob() -> None:
    delta = diff_flat({"l": FileEntry("120000", A, 1)}, {"f": FileEntry("100644", A, 1)})
    assert delta.renames == ()
