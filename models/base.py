"""Declarative base, column types shared by every model, and the Flask-SQLAlchemy handle."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import BigInteger, DateTime, Integer, MetaData, String, TypeDecorator
from sqlalchemy import Enum as SAEnum
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, registry


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    SQLite has no time zones and hands back naive datetimes; PostgreSQL keeps them.
    Normalising here means no caller ever compares naive and aware values.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def str_enum(enum: type[Enum], *, length: int = 16, check: str | None = None) -> SAEnum:
    """Store a ``str`` Enum as its value in a plain VARCHAR (no database enum type to migrate).

    ``length`` must hold the longest value. With ``check``, the database also refuses
    any other value: a CHECK constraint named ``ck_<table>_<check>`` (the naming
    convention) lists the values, so a value added to the Enum needs a migration that
    replaces the constraint.
    """
    return SAEnum(
        enum,
        native_enum=False,
        create_constraint=check is not None,
        name=check,
        length=length,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


GitSha = Annotated[str, "git object id"]
"""A 40-character hexadecimal git object id (SHA-1)."""

GitHubId = Annotated[int, "GitHub database id"]
"""A GitHub database id; these exceed 2**31, so they are BIGINT everywhere."""

# Constraint names follow one convention so Alembic migrations can refer to them and
# SQLite batch migrations can recreate them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only makes INTEGER PRIMARY KEY an alias of the rowid (auto-increment); a
# BIGINT primary key there would need explicit ids.
BigIntKey = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    # Given as a registry rather than class attributes because Flask-SQLAlchemy
    # subclasses this base, and SQLAlchemy refuses a per-subclass type map.
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={
            datetime: UTCDateTime(),
            GitSha: String(40),
            GitHubId: BigInteger(),
        },
    )


db = SQLAlchemy(model_class=Base)

if TYPE_CHECKING:
    # Flask-SQLAlchemy builds db.Model at run time as a subclass of Base; type checkers
    # cannot see through that, so they are shown Base itself.
    Model = Base
else:
    Model = db.Model


def discard_session() -> None:
    """End the current session even if its connection is unusable.

    A job timeout (a signal) can interrupt a query mid-command; rolling back on that
    connection then fails with "another command is already in progress". The
    connection is invalidated instead (closed, never returned to the pool), so the
    next statement runs on a fresh one.
    """
    try:
        db.session.rollback()
    except Exception:
        db.session().invalidate()
    db.session.remove()
