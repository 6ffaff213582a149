"""Models, their versions, aliases and packages."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from app import models, web_paths
from app.errors import InvalidValueError, NotFoundError
from app.external_urls import file_url, logged_model_file_url
from app.graphql import connections
from app.graphql.connections import Connection
from app.graphql.context import Info
from app.graphql.nodes import readable_nodes
from app.graphql.types.candidates import (
    Candidate,
    CandidateFilter,
    CandidateOrder,
    candidate_page,
)
from app.graphql.types.charts import CandidateKeys
from app.graphql.types.common import KeyValue, Long, OrderDirection
from app.graphql.types.permissions import ModelPermissions, ModelVersionPermissions, permissions
from app.graphql.types.users import User
from app.runtime import get_runtime
from app.services import candidates, keyset, mlmodel, packages, versions
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


@strawberry.type(
    description="A file of a package, downloadable from the package API. Its `id` is "
    "`PackageFile:<row id>`, stable while the file is kept, not a global id."
)
class PackageFile:
    id: strawberry.ID
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
            cls.of(row, file_url(info.context.request, project.path, ref, row.path))
            for row in await info.context.loaders.package_files.load(package_id)
        ]

    @classmethod
    def of(cls, row: models.PackageFile, download_url: str) -> PackageFile:
        return cls(
            id=strawberry.ID(f"PackageFile:{row.id}"),
            path=row.path,
            size=Long(row.size),
            sha256=row.sha256,
            download_url=download_url,
        )


@strawberry.type(description="A flavor of a model (MLflow's), with its library's version.")
class Flavor:
    name: str
    version: str | None


@strawberry.type(
    description="The files of a candidate or a version, with a name and version. Its `id` "
    "is `Package:<row id>`, stable while the package is kept, not a global id."
)
class Package:
    name: str
    version: str
    package_type: models.PackageType
    status: models.PackageStatus
    row: strawberry.Private[models.Package]
    ref: strawberry.Private[str]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(f"Package:{self.row.id}")

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
    async def user_permissions(self, info: Info) -> ModelVersionPermissions:
        """What the caller may do with this version: the buttons a UI shows."""
        return await permissions(info, ModelVersionPermissions, self.row.project_id)

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

    @strawberry.field
    async def web_path(self, info: Info) -> str:
        """The version's page in the web UI: /<project>/-/models/<name>/versions/<semver>."""
        model = await info.context.loaders.model.load(self.row.model_id)
        project = await info.context.loaders.project.load(self.row.project_id)
        if model is None or project is None:
            raise NotFoundError(f"The model of version {self.version} is gone")
        return web_paths.version_page(project.path, model.name, self.row.version)

    @strawberry.field
    async def files(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[PackageFile] | None:
        """The version's files by path: its package's (uploaded through the package API),
        or, for a version registered through MLflow from a logged model, that model's
        (uploaded through MLflow's artifact proxy, and downloaded through it)."""
        window = connections.window(info, first=first, after=after, last=last, before=before)
        async with info.context.database.session(read_only=True) as session:
            where = await versions.files_of_version(session, version=self.row)
            if where.package_id is None:
                page = keyset.KeysetPage[models.PackageFile]([], [], False, False, 0)
            else:
                query, sort = packages.sorted_files(where.package_id)
                page = await keyset.read(session, query, sort, window)
        project = await info.context.loaders.project.load(self.row.project_id)
        assert project is not None
        request = info.context.request
        logged = where.logged_model
        if logged is None:
            return connections.connection(
                page,
                lambda row: PackageFile.of(
                    row, file_url(request, project.path, str(self.row.id), row.path)
                ),
            )
        model = await info.context.loaders.model.load(logged.model_id)
        assert model is not None
        return connections.connection(
            page,
            lambda row: PackageFile.of(
                row, logged_model_file_url(request, project.path, model.iid, logged.eid, row.path)
            ),
        )

    async def _description(self, info: Info) -> mlmodel.ModelDescription:
        async with info.context.database.session(read_only=True) as session:
            where = await versions.files_of_version(session, version=self.row)
            file = None
            if where.package_id is not None:
                file = await mlmodel.find_mlmodel(session, package_id=where.package_id)
        store = get_runtime(info.context.request).artifacts
        return await mlmodel.read_description(store, file)

    @strawberry.field
    async def signature(self, info: Info) -> JSON | None:
        """The signature of the version's MLmodel file, as MLflow writes it: `inputs`,
        `outputs` and `params`, each a list of column or parameter specs; null without one."""
        signature = (await self._description(info)).signature
        return None if signature is None else JSON(signature)

    @strawberry.field
    async def flavors(self, info: Info) -> list[Flavor]:
        """The flavors of the version's MLmodel file, by name (empty without one)."""
        found = (await self._description(info)).flavors
        return [Flavor(name=flavor.name, version=flavor.version) for flavor in found]

    @strawberry.field
    async def upload_url(self, info: Info) -> str:
        """Where the package API takes this version's files: PUT <uploadUrl><path>."""
        project = await info.context.loaders.project.load(self.row.project_id)
        assert project is not None
        return file_url(info.context.request, project.path, str(self.row.id), "")


@strawberry.type(
    description="A name pointing at one version of a model, e.g. champion. Its `id` is "
    "`Alias:<model row id>:<alias>`, stable while the alias exists (wherever it points), "
    "not a global id."
)
class Alias:
    alias: str
    version_id: strawberry.Private[int]
    model_id: strawberry.Private[int]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(f"Alias:{self.model_id}:{self.alias}")

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
    async def web_path(self, info: Info) -> str:
        """The model's page in the web UI: /<project>/-/models/<name>."""
        project = await info.context.loaders.project.load(self.row.project_id)
        assert project is not None
        return web_paths.model_page(project.path, self.row.name)

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
    async def user_permissions(self, info: Info) -> ModelPermissions:
        """What the caller may do with this model: the buttons a UI shows."""
        return await permissions(info, ModelPermissions, self.row.project_id)

    @strawberry.field
    async def latest_version(self, info: Info) -> ModelVersion | None:
        """The version with the highest number."""
        row = await info.context.loaders.newest_version.load(self.row.id)
        return ModelVersion.from_row(row) if row is not None else None

    @strawberry.field
    async def version(
        self, info: Info, version: str | None = None, number: int | None = None
    ) -> ModelVersion | None:
        """A version by its semver (e.g. 1.2.0) or its number (MLflow's version): exactly
        one."""
        if (version is None) == (number is None):
            raise InvalidValueError("Pass exactly one of `version` and `number`", field="version")
        async with info.context.database.session(read_only=True) as session:
            try:
                row = await versions.get_version(
                    session, model=self.row, version=version, number=number
                )
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
    ) -> Connection[ModelVersion] | None:
        order = order_by or VersionOrder()
        window = connections.window(info, first=first, after=after, last=last, before=before)
        query, sort = versions.sorted_versions(
            self.row, sort=order.field, ascending=order.direction.ascending
        )
        async with info.context.database.session(read_only=True) as session:
            page = await keyset.read(session, query, sort, window)
        return connections.connection(page, ModelVersion.from_row)

    @strawberry.field
    async def version_count(self, info: Info) -> int:
        return await info.context.loaders.version_count.load(self.row.id)

    @strawberry.field
    async def candidate_count(self, info: Info) -> int:
        return await info.context.loaders.candidate_count.load(self.row.id)

    @strawberry.field
    async def candidate_keys(self, info: Info) -> CandidateKeys:
        """The metric, param and tag names its candidates have logged (a column chooser's
        choices), system tags left out; names stay after their candidates are deleted."""
        return CandidateKeys.from_keys(await info.context.loaders.candidate_keys.load(self.row.id))

    @strawberry.field
    async def aliases(self, info: Info) -> list[Alias]:
        entries = await info.context.loaders.model_aliases.load(self.row.id)
        return [
            Alias(alias=alias, version_id=version_id, model_id=self.row.id)
            for alias, version_id in entries
        ]

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
    ) -> Connection[Candidate] | None:
        """The model's candidates, filtered and ordered by metrics, params, tags."""
        window = connections.window(info, first=first, after=after, last=last, before=before)
        search = functools.partial(candidates.search, model=self.row)
        return await candidate_page(info, search, filter, order_by, window)
