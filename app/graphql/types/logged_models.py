"""Logged models (MLflow 3) as a candidate shows them: the models its run logged, with
their params, tags, metrics (every point logged for the model, by any run of the project,
as MLflow's `get_logged_model` returns them) and the files uploaded for them."""

from __future__ import annotations

import datetime as dt
import enum

import strawberry

from app import models
from app.external_urls import logged_model_file_url
from app.graphql.context import Info
from app.graphql.types.candidates import Metric
from app.graphql.types.common import KeyValue, Long
from app.services import logged_models
from app.services.candidates import MetricPoint


@strawberry.enum(description="MLflow's LoggedModelStatus: whether its files are uploaded.")
class LoggedModelStatus(enum.Enum):
    PENDING = logged_models.PENDING
    READY = logged_models.READY
    UPLOAD_FAILED = logged_models.UPLOAD_FAILED


@strawberry.type(description="A metric value measured for a logged model, on a dataset if named.")
class LoggedModelMetric(Metric):
    dataset_name: str | None = None
    dataset_digest: str | None = None

    @classmethod
    def of(cls, point: MetricPoint) -> LoggedModelMetric:
        metric = Metric.from_point(point)
        return cls(
            name=metric.name,
            value=metric.value,
            kind=metric.kind,
            step=metric.step,
            timestamp=metric.timestamp,
            dataset_name=point.dataset_name,
            dataset_digest=point.dataset_digest,
        )


@strawberry.type(description="A file uploaded for a logged model.")
class LoggedModelFile:
    path: str
    size: Long
    sha256: str | None
    download_url: str = strawberry.field(
        description="Where the file downloads from: MLflow's artifact proxy of its project."
    )


@strawberry.type(description="A model logged by a run (MLflow 3's logged model).")
class LoggedModel:
    id: strawberry.ID = strawberry.field(description="The MLflow model id, m-<32 hex digits>.")
    name: str
    status: LoggedModelStatus
    status_message: str | None
    model_type: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    row: strawberry.Private[models.LoggedModel]

    @classmethod
    def from_row(cls, row: models.LoggedModel) -> LoggedModel:
        return cls(
            id=strawberry.ID(row.eid),
            name=row.name,
            status=LoggedModelStatus(row.status),
            status_message=row.status_message,
            model_type=row.model_type,
            created_at=row.created_at,
            updated_at=row.updated_at,
            row=row,
        )

    @strawberry.field
    def params(self) -> list[KeyValue]:
        return KeyValue.listed(self.row.params)

    @strawberry.field
    def tags(self) -> list[KeyValue]:
        return KeyValue.listed(self.row.tags)

    @strawberry.field
    async def metrics(self, info: Info) -> list[LoggedModelMetric]:
        """Every point logged for the model, by name, step and time."""
        points = await info.context.loaders.logged_model_metrics.load(self.row)
        return [LoggedModelMetric.of(point) for point in points]

    @strawberry.field
    async def files(self, info: Info) -> list[LoggedModelFile]:
        """The files uploaded for the model, by path."""
        if self.row.package_id is None:
            return []
        rows = await info.context.loaders.package_files.load(self.row.package_id)
        project = await info.context.loaders.project.load(self.row.project_id)
        model = await info.context.loaders.model.load(self.row.model_id)
        assert project is not None and model is not None
        request = info.context.request
        return [
            LoggedModelFile(
                path=row.path,
                size=Long(row.size),
                sha256=row.sha256,
                download_url=logged_model_file_url(
                    request, project.path, model.iid, self.row.eid, row.path
                ),
            )
            for row in rows
        ]
