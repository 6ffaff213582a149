"""ORM tables, one module per aggregate. Importing this package registers them all."""

from app.models.audit import AuditEvent
from app.models.candidate import (
    Candidate,
    CandidateInput,
    CandidateLatestMetric,
    CandidateMetadata,
    CandidateMetric,
    CandidateParam,
)
from app.models.candidate_keys import ModelCandidateKey
from app.models.enums import (
    CandidateStatus,
    JobStatus,
    LifecycleState,
    PackageStatus,
    PackageType,
    Role,
    VersionStage,
    VersionStatus,
    Visibility,
)
from app.models.job import Job
from app.models.logged_model import LoggedModel
from app.models.model import Model, ModelAlias, ModelMetadata
from app.models.package import Package, PackageFile
from app.models.project import Membership, Project
from app.models.session import BrowserSession
from app.models.user import AccessToken, User
from app.models.version import ModelVersion, ModelVersionMetadata
from app.models.webhook import DeliveryStatus, Webhook, WebhookDelivery, WebhookStatus

__all__ = [
    "AccessToken",
    "AuditEvent",
    "BrowserSession",
    "Candidate",
    "CandidateInput",
    "CandidateLatestMetric",
    "CandidateMetadata",
    "CandidateMetric",
    "CandidateParam",
    "CandidateStatus",
    "DeliveryStatus",
    "Job",
    "JobStatus",
    "LifecycleState",
    "LoggedModel",
    "Membership",
    "Model",
    "ModelAlias",
    "ModelCandidateKey",
    "ModelMetadata",
    "ModelVersion",
    "ModelVersionMetadata",
    "Package",
    "PackageFile",
    "PackageStatus",
    "PackageType",
    "Project",
    "Role",
    "User",
    "VersionStage",
    "VersionStatus",
    "Visibility",
    "Webhook",
    "WebhookDelivery",
    "WebhookStatus",
]
