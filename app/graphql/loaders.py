"""DataLoaders, made per request: the fields of a page of objects are read with one query
per kind of data, whatever the page size. Each batch reads in its own short session, so
loaders run side by side and no connection is held across a whole request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from app import models
from app.db import Database
from app.services import (
    candidate_keys,
    candidates,
    jobs,
    logged_models,
    packages,
    projects,
    users,
    versions,
)
from app.services import (
    models as model_service,
)
from app.services.actor import Actor
from app.services.candidate_keys import CandidateKeys
from app.services.candidates import ChartRequest, DatasetInput, MetricPoint

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Loaders:
    def __init__(self, database: Database, actor: Actor | None) -> None:
        def loader(
            fetch: Callable[[AsyncSession, list[K]], Awaitable[Mapping[K, V]]], default: V
        ) -> DataLoader[K, V]:
            async def load(keys: list[K]) -> list[V]:
                async with database.session(read_only=True) as session:
                    found = await fetch(session, keys)
                return [found.get(key, default) for key in keys]

            return DataLoader(load_fn=load)

        none = None
        self.project: DataLoader[int, models.Project | None] = loader(
            lambda s, ids: projects.get_projects(s, ids=ids), none
        )

        async def readable(session: AsyncSession, ids: list[int]) -> dict[int, bool]:
            found = await projects.readable_project_ids(session, actor=actor, ids=ids)
            return {project_id: project_id in found for project_id in ids}

        # Whether the caller may read a project: what every lookup by id checks.
        self.readable: DataLoader[int, bool] = loader(readable, False)
        # The caller's role in a project (None: not a member), for `userPermissions`.
        self.role: DataLoader[int, models.Role | None] = loader(
            lambda s, ids: projects.roles_of(s, actor=actor, ids=ids), none
        )
        self.user: DataLoader[int, models.User | None] = loader(
            lambda s, ids: users.get_users(s, ids=ids), none
        )
        self.model: DataLoader[int, models.Model | None] = loader(
            lambda s, ids: model_service.get_models(s, ids=ids), none
        )
        self.candidate: DataLoader[int, models.Candidate | None] = loader(
            lambda s, ids: candidates.get_candidates(s, ids=ids), none
        )
        self.version: DataLoader[int, models.ModelVersion | None] = loader(
            lambda s, ids: versions.get_versions(s, ids=ids), none
        )
        self.job: DataLoader[int, models.Job | None] = loader(
            lambda s, ids: jobs.get_jobs(s, ids=ids), none
        )
        self.package: DataLoader[int, models.Package | None] = loader(
            lambda s, ids: packages.get_packages(s, ids=ids), none
        )
        empty_files: list[models.PackageFile] = []
        self.package_files: DataLoader[int, list[models.PackageFile]] = loader(
            lambda s, ids: packages.files_of(s, package_ids=ids), empty_files
        )
        self.model_metadata: DataLoader[int, dict[str, str]] = loader(
            lambda s, ids: model_service.metadata_of(s, model_ids=ids), {}
        )
        self.candidate_count: DataLoader[int, int] = loader(
            lambda s, ids: candidates.count_candidates(s, model_ids=ids), 0
        )
        self.version_count: DataLoader[int, int] = loader(
            lambda s, ids: versions.count_versions(s, model_ids=ids), 0
        )
        self.newest_version: DataLoader[int, models.ModelVersion | None] = loader(
            lambda s, ids: versions.newest_versions(s, model_ids=ids), none
        )
        no_aliases: list[tuple[str, int]] = []
        self.model_aliases: DataLoader[int, list[tuple[str, int]]] = loader(
            lambda s, ids: versions.aliases_of_models(s, model_ids=ids), no_aliases
        )
        no_names: list[str] = []
        self.version_aliases: DataLoader[int, list[str]] = loader(
            lambda s, ids: versions.aliases_of_versions(s, version_ids=ids), no_names
        )
        self.version_metadata: DataLoader[int, dict[str, str]] = loader(
            lambda s, ids: versions.metadata_of(s, version_ids=ids), {}
        )
        self.version_candidate: DataLoader[int, models.Candidate | None] = loader(
            lambda s, ids: candidates.candidates_of_versions(s, version_ids=ids), none
        )
        self.params: DataLoader[int, dict[str, str]] = loader(
            lambda s, ids: candidates.params_of(s, candidate_ids=ids), {}
        )
        self.candidate_metadata: DataLoader[int, dict[str, str]] = loader(
            lambda s, ids: candidates.metadata_of(s, candidate_ids=ids), {}
        )
        # Keyed by (candidate id, names): a table showing a few columns reads only those.
        self.params_named: DataLoader[tuple[int, tuple[str, ...]], dict[str, str]] = loader(
            lambda s, asked: candidates.entries_named(s, models.CandidateParam, asked=asked), {}
        )
        self.metadata_named: DataLoader[tuple[int, tuple[str, ...]], dict[str, str]] = loader(
            lambda s, asked: candidates.entries_named(s, models.CandidateMetadata, asked=asked),
            {},
        )
        no_inputs: list[DatasetInput] = []
        self.dataset_inputs: DataLoader[int, list[DatasetInput]] = loader(
            lambda s, ids: candidates.dataset_inputs_of(s, candidate_ids=ids), no_inputs
        )
        self.parent: DataLoader[int, models.Candidate | None] = loader(
            lambda s, ids: candidates.parents_of(s, candidate_ids=ids), none
        )
        no_children: list[models.Candidate] = []
        # Keyed by (candidate id, how many children at most).
        self.children: DataLoader[tuple[int, int], list[models.Candidate]] = loader(
            lambda s, asked: candidates.children_of(s, asked=asked), no_children
        )
        no_metrics: list[MetricPoint] = []
        self.latest_metrics: DataLoader[int, list[MetricPoint]] = loader(
            lambda s, ids: candidates.get_latest_metrics_of(s, candidate_ids=ids), no_metrics
        )
        # Keyed by (candidate id, names), as params_named.
        self.latest_metrics_named: DataLoader[tuple[int, tuple[str, ...]], list[MetricPoint]] = (
            loader(lambda s, asked: candidates.latest_metrics_named(s, asked=asked), no_metrics)
        )
        self.candidate_keys: DataLoader[int, CandidateKeys] = loader(
            lambda s, ids: candidate_keys.keys_of_models(s, model_ids=ids), CandidateKeys()
        )
        no_series: list[list[MetricPoint]] = []
        self.chart_series: DataLoader[tuple[int, ChartRequest], list[list[MetricPoint]]] = loader(
            lambda s, asked: candidates.chart_series(s, asked=asked), no_series
        )
        no_logged_models: list[models.LoggedModel] = []
        self.candidate_logged_models: DataLoader[int, list[models.LoggedModel]] = loader(
            lambda s, ids: logged_models.logged_models_of_candidates(s, candidate_ids=ids),
            no_logged_models,
        )
        self.logged_model_metrics: DataLoader[models.LoggedModel, list[MetricPoint]] = loader(
            lambda s, rows: logged_models.metrics_of(s, logged_models=rows), no_metrics
        )
