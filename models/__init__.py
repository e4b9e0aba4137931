"""SQLAlchemy 2.0 models of Project Sync and the queries that belong to them.

Importing this package registers every model on :data:`db`'s metadata, which is what
Alembic autogenerate compares the migrations against.
"""

from models.base import Base, db
from models.content import Blob, GitTree, MemoryEntry, RepositoryFile
from models.delivery import WebhookDelivery
from models.enums import DeliveryStatus, StopKind, SyncMode, SyncStatus, SyncTrigger
from models.github import Installation, Repository
from models.maintenance import MaintenanceCheckpoint, RedeliveryRequest
from models.project import Project, ProjectSync, SyncRequest

__all__ = [
    "Base",
    "Blob",
    "DeliveryStatus",
    "GitTree",
    "Installation",
    "MaintenanceCheckpoint",
    "MemoryEntry",
    "Project",
    "ProjectSync",
    "RedeliveryRequest",
    "Repository",
    "RepositoryFile",
    "StopKind",
    "SyncMode",
    "SyncRequest",
    "SyncStatus",
    "SyncTrigger",
    "WebhookDelivery",
    "db",
]
