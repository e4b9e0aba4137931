from __future__ import annotations

from sync_jobs.core.plan import (
    ContentKind,
    DeltaBase,
    FetchCosts,
    FetchStrategy,
    PushedHead,
    choose_fetch,
    classify_content,
    delta_blocker,
    pushed_want,
    tar_member_mode,
    tar_member_path,
)

COSTS = FetchCosts(
    blob_call_seconds=0.1,
    concurrency=10,
    tarball_fixed_seconds=0.3,
    tarball_seconds_per_file=0.0001,
)


def test_delta_is_allowed_only_with_a_stored_previous_tree() -> None:
    assert delta_blocker(DeltaBase(3, "a" * 40, True)) is None
    assert "no successful sync" in str(delta_blocker(DeltaBase(None, None, False)))
    assert "no tree SHA" in str(delta_blocker(DeltaBase(3, None, False)))
    assert "not stored" in str(delta_blocker(DeltaBase(3, "a" * 40, False)))
    assert "requested" in str(delta_blocker(DeltaBase(3, "a" * 40, True, full_requested=True)))


def test_fetch_strategy_follows_the_costs() -> None:
    assert choose_fetch(0, 50_000, COSTS) is FetchStrategy.NOTHING
    assert choose_fetch(3, 50_000, COSTS) is FetchStrategy.BLOBS
    assert choose_fetch(50_000, 50_000, COSTS) is FetchStrategy.TARBALL
    assert choose_fetch(100, 100, COSTS) is FetchStrategy.TARBALL


def test_content_classification() -> None:
    assert classify_content(b"caf\xc3\xa9\n", max_bytes=10) == (ContentKind.TEXT, "café\n")
    assert classify_content(b"", max_bytes=10) == (ContentKind.TEXT, "")
    assert classify_content(b"a\0b", max_bytes=10) == (ContentKind.BINARY, None)
    assert classify_content(b"caf\xe9\n", max_bytes=10) == (ContentKind.TEXT, "café\n")
    assert classify_content(b"x" * 11, max_bytes=10) == (ContentKind.OVERSIZED, None)


def test_tar_members_map_to_paths_and_modes() -> None:
    assert tar_member_path("octo-repo-abc123/src/a.py") == "src/a.py"
    assert tar_member_path("octo-repo-abc123/") is None
    assert tar_member_path("pax_global_header") is None
    assert tar_member_mode(is_symlink=True, permissions=0o777) == "120000"
    assert tar_member_mode(is_symlink=False, permissions=0o755) == "100755"
    assert tar_member_mode(is_symlink=False, permissions=0o644) == "100644"


def test_a_pushed_head_is_fetched_only_from_the_synced_commit() -> None:
    push = PushedHead(before="a" * 40, after="b" * 40)
    assert pushed_want(push, synced_commit="a" * 40) == "b" * 40
    assert pushed_want(push, synced_commit="c" * 40) is None  # late, or overtaken
    assert pushed_want(push, synced_commit=None) is None  # a first sync asks
    assert pushed_want(None, synced_commit="a" * 40) is None
