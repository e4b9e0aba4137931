"""Mirrors of GitHub's own objects: the App's installations and the repositories they grant.

Rows are keyed by GitHub's database ids, which survive renames and transfers, so a
repository's history stays attached to it whatever it is called.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import GitHubId, Model, utcnow

if TYPE_CHECKING:
    from models.project import Project


class Installation(Model):
    """One installation of the App on a user or organisation account."""

    __tablename__ = "installation"

    id: Mapped[int] = mapped_column(primary_key=True)
    github_id: Mapped[GitHubId] = mapped_column(unique=True)
    account_login: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[GitHubId | None]
    account_type: Mapped[str] = mapped_column(String(32), default="User")  # "User"/"Organization"
    permissions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    suspended_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    repositories: Mapped[list[Repository]] = relationship(back_populates="installation")

    @property
    def is_active(self) -> bool:
        return self.deleted_at is None and self.suspended_at is None

    def __repr__(self) -> str:
        return f"<Installation {self.github_id} {self.account_login}>"


class Repository(Model):
    """A repository the App can see through an installation."""

    __tablename__ = "repository"

    id: Mapped[int] = mapped_column(primary_key=True)
    github_id: Mapped[GitHubId] = mapped_column(unique=True)
    installation_id: Mapped[int | None] = mapped_column(
        ForeignKey("installation.id", ondelete="SET NULL"), index=True
    )
    full_name: Mapped[str] = mapped_column(String(255), index=True)
    default_branch: Mapped[str] = mapped_column(String(255), default="main")
    private: Mapped[bool] = mapped_column(default=False)
    # Set when the repository is deleted on GitHub or removed from the installation;
    # its projects stop syncing but their history stays readable unless purged.
    removed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    installation: Mapped[Installation | None] = relationship(back_populates="repositories")
    projects: Mapped[list[Project]] = relationship(back_populates="repository")

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]

    def __repr__(self) -> str:
        return f"<Repository {self.github_id} {self.full_name}>"
