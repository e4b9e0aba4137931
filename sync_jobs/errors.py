"""Every exception Project Sync defines, each named after its condition."""

from __future__ import annotations


class ProjectSyncError(Exception):
    """Base of the project's own errors."""


class ConfigError(ProjectSyncError):
    """A setting is missing or malformed; raised at start, naming the variable."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name} {problem}")
        self.name = name
        self.problem = problem
