"""Models, their versions, aliases and packages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry import relay

from app import models
from app.errors import InvalidValueError, NotFoundError
from app.graphql.connections import Connection, paginate
from app.graphql.context import Info
from app.graphql.nodes import readable_nodes
from app.graphql.types.candidates import Candidate, CandidateFilter, CandidateOrder
from app.graphql.types.common import KeyValue, Long, OrderDirection
from app.graphql.types.users import User
from app.rest.packages import file_url
from app.services import candidates, versions
from app.services.versions import VersionSort

if TYPE_CHECKING:
    from app.graphql.types.projects import Project

ProjectType = Annotated["Project", strawberry.lazy("app.graphql.types.projects")]

strawberry.enum(VersionSort, name="VersionOrderField")


@strawberry.input
class VersionOrder:
    field: VersionSort = VersionSort.NUMBER
    direction: OrderDirection = OrderDirection.DESC


async def _author(info: Info, user_id: int | None) -> User | None:
    if user_id is None:
        return None
    row = await info.context.loaders.user.load(user_id)
    return User.from_row(row) if row is not None else None


@strawberry.type(description="A file of a package, downloadable from the package API.")
class PackageFile:
    path: str
    size: Long
    sha256: str | None
    download_url: str

    @classmethod
    async def list(
        cls, info: Info, *, project_id: int, package_id: int | None, ref: str
    ) -> list[PackageFile]:
        if package_id is None:
            return []
        project = await info.context.loaders.project.load(project_id)
        assert project is not None
        return [
            cls(
                path=row.path,
                size=Long(row.size),
                sha256=row.sha256,
                download_url=file_url(info.context.request, project.path, ref, row.path),
            )
            for row in await info.context.loaders.package_files.load(package_id)
        ]


@strawberry.type(description="The files of a candidate or a version, with a name and version.")
class Package:
    name: str
    version: str
    package_type: models.PackageType
    status: models.PackageStatus
    row: strawberry.Private[models.Package]
    ref: strawberry.Private[str]

    @strawberry.field
    async def files(self, info: Info) -> list[PackageFile]:
        return await PackageFile.list(
            info, project_id=self.row.project_id, package_id=self.row.id, ref=self.ref
        )


@strawberry.type(description="A release of a model: a semver, one candidate, a package.")
class ModelVersion(relay.Node):
    id: relay.NodeID[int]
    number: int = strawberry.field(description="The sequential number (MLflow's version).")
    version: str = strawberry.field(description="The semantic version, e.g. 1.2.0.")
    description: str | None
    stage: models.VersionStage
    source: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    row: strawberry.Private[models.ModelVersion]

    @classmethod
    def from_row(cls, row: models.ModelVersion) -> ModelVersion:
        return cls(
            id=row.id,
            number=row.number,
            version=row.version,
            description=row.description,
            stage=row.stage,
            source=row.source,
            created_at=row.created_at,
            updated_at=row.updated_at,
            row=row,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[ModelVersion | None]:
        return await readable_nodes(info, info.context.loaders.version, node_ids, cls.from_row)

    @strawberry.field
    def description_html(self) -> str | None:
        # Rendered when the description was written: reads never run markdown-it.
        return self.row.description_html

    @strawberry.field
    async def model(self, info: Info) -> Model:
        row = await info.context.loaders.model.load(self.row.model_id)
        if row is None:
            raise NotFoundError(f"The model of version {self.version} is gone")
        return Model.from_row(row)

    @strawberry.field
    async def candidate(self, info: Info) -> Candidate:
        row = await info.context.loaders.version_candidate.load(self.row.id)
        if row is None:
            raise NotFoundError(f"Version {self.version} has no candidate")
        return Candidate.from_row(row)

    @strawberry.field
    async def aliases(self, info: Info) -> list[str]:
        return await info.context.loaders.version_aliases.load(self.row.id)

    @strawberry.field
    async def metadata(self, info: Info) -> list[KeyValue]:
        return KeyValue.listed(await info.context.loaders.version_metadata.load(self.row.id))

    @strawberry.field
    async def package(self, info: Info) -> Package | None:
        if self.row.package_id is None:
            return None
        row = await info.context.loaders.package.load(self.row.package_id)
        if row is None:
            return None
        return Package(
            name=row.name,
            version=row.version,
            package_type=row.package_type,
            status=row.status,
            row=row,
            ref=str(self.row.id),
        )

    @strawberry.field
    async def author(self, info: Info) -> User | None:
        return await _author(info, self.row.created_by_id)


@strawberry.type(description="A name pointing at one version of a model, e.g. champion.")
class Alias:
    alias: str
    version_id: strawberry.Private[int]

    @strawberry.field
    async def version(self, info: Info) -> ModelVersion:
        row = await info.context.loaders.version.load(self.version_id)
        if row is None:
            raise NotFoundError(f"Alias '{self.alias}' points at no version")
        return ModelVersion.from_row(row)


@strawberry.type(
    description="A model: its candidates (training runs, MLflow's experiment) and its "
    "versions (releases, MLflow's registered model)."
)
class Model(relay.Node):
    id: relay.NodeID[int]
    iid: int = strawberry.field(description="The id within its project (MLflow's experiment id).")
    name: str = strawberry.field(description="The slug: lowercase letters, digits, _ and -.")
    display_name: str
    description: str | None
    registered: bool = strawberry.field(description="Whether MLflow's registry lists it.")
    created_at: dt.datetime
    updated_at: dt.datetime
    row: strawberry.Private[models.Model]

    @classmethod
    def from_row(cls, row: models.Model) -> Model:
        return cls(
            id=row.id,
            iid=row.iid,
            name=row.name,
            display_name=row.display_name,
            description=row.description,
            registered=row.registered,
            created_at=row.created_at,
            updated_at=row.updated_at,
            row=row,
        )

    @classmethod
    async def resolve_nodes(  # type: ignore[override]
        cls, *, info: Info, node_ids: Iterable[str], required: bool = False
    ) -> list[Model | None]:
        return await readable_nodes(info, info.context.loaders.model, node_ids, cls.from_row)

    @strawberry.field
    def description_html(self) -> str | None:
        """The description rendered from Markdown to safe HTML."""
        return self.row.description_html

    @strawberry.field
    async def metadata(self, info: Info) -> list[KeyValue]:
        return KeyValue.listed(await info.context.loaders.model_metadata.load(self.row.id))

    @strawberry.field
    async def project(self, info: Info) -> ProjectType:
        from app.graphql.types.projects import Project

        row = await info.context.loaders.project.load(self.row.project_id)
        assert row is not None
        return Project.from_row(row)

    @strawberry.field
    async def author(self, info: Info) -> User | None:
        return await _author(info, self.row.created_by_id)

    @strawberry.field
    async def latest_version(self, info: Info) -> ModelVersion | None:
        """The version with the highest number."""
        row = await info.context.loaders.newest_version.load(self.row.id)
        return ModelVersion.from_row(row) if row is not None else None

    @strawberry.field
    async def version(self, info: Info, version: str) -> ModelVersion | None:
        """A version by its semver, e.g. 1.2.0."""
        async with info.context.database.session(read_only=True) as session:
            try:
                row = await versions.get_version(session, model=self.row, version=version)
            except NotFoundError:
                return None
        return ModelVersion.from_row(row)

    @strawberry.field
    async def versions(
        self,
        info: Info,
        order_by: VersionOrder | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[ModelVersion]:
        order = order_by or VersionOrder()
        query, sort = versions.sorted_versions(
            self.row, sort=order.field, ascending=order.direction.ascending
        )
        return await paginate(
            info.context.database,
            query,
            sort,
            first=first,
            after=after,
            last=last,
            before=before,
            node=ModelVersion.from_row,
        )

    @strawberry.field
    async def version_count(self, info: Info) -> int:
        return await info.context.loaders.version_count.load(self.row.id)

    @strawberry.field
    async def candidate_count(self, info: Info) -> int:
        return await info.context.loaders.candidate_count.load(self.row.id)

    @strawberry.field
    async def aliases(self, info: Info) -> list[Alias]:
        entries = await info.context.loaders.model_aliases.load(self.row.id)
        return [Alias(alias=alias, version_id=version_id) for alias, version_id in entries]

    @strawberry.field
    async def candidates(
        self,
        info: Info,
        filter: CandidateFilter | None = None,
        order_by: CandidateOrder | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Candidate]:
        """The model's candidates, filtered and ordered by metrics, params, tags."""
        order = order_by or CandidateOrder()
        conditions = (filter or CandidateFilter()).conditions()
        try:
            query, sort = candidates.sorted_candidates(
                self.row,
                conditions=conditions,
                sort=order.field,
                key=order.key,
                ascending=order.direction.ascending,
            )
        except InvalidValueError as error:
            raise InvalidValueError(error.message, field=f"orderBy.{error.field}") from None
        return await paginate(
            info.context.database,
            query,
            sort,
            first=first,
            after=after,
            last=last,
            before=before,
            node=Candidate.from_row,
        )
