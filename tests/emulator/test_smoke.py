"""End to end: githubkit with App credentials lists, authenticates and reads."""

import subprocess

from githubkit import GitHub

from github_emulator import EmulatorServer
from github_emulator.testing import SampleRepository


def test_branch_tree_blob_round_trip(github_emulator: EmulatorServer,
                                     sample_repository: SampleRepository,
                                     app_github: GitHub, installation_github: GitHub) -> None:
    installations = app_github.rest.apps.list_installations().parsed_data
    assert [i.id for i in installations] == [sample_repository.installation_id]
    branch = installation_github.rest.repos.get_branch("octo", "sample", "main").parsed_data
    assert branch.commit.sha == sample_repository.history.head
    tree = installation_github.rest.git.get_tree(
        "octo", "sample", branch.commit.commit.tree.sha, recursive="1").parsed_data
    blob_entry = next(e for e in tree.tree if e.type == "blob" and e.mode == "100644")
    blob = installation_github.rest.git.get_blob("octo", "sample", blob_entry.sha).parsed_data
    expected = subprocess.run(["git", "cat-file", "blob", blob_entry.sha],
                              cwd=sample_repository.work_dir, capture_output=True,
                              check=True).stdout
    import base64
    assert base64.b64decode(blob.content) == expected
