"""The import itself: an MLflow server's experiments, runs, artifacts, logged models and
registry, written into one project through the services, as the operator.

Phases, in this order (each a progress bar):

1. ``experiments``: each experiment becomes a model (experiment id 0 is the project's
   Default model; others are found by name, or created), with its tags.
2. ``runs``: each run becomes a candidate with the same run id, name, status, start and
   end time, params, tags (``mlflow.parentRunId`` keeps the nesting), every point of
   every metric history (NaN and the infinities included), inputs and outputs; a deleted
   run ends deleted. All of a run is written in one transaction, after it was read.
3. ``logged models``: MLflow 3 logged models, with the same ``m-...`` ids, params, tags
   and status.
4. ``artifacts``: every file of every run and logged model, streamed into its package
   (`packages.store_file` checksums it on the way).
5. ``registry``: registered models (description, tags), their versions with the same
   numbers (source, run, logged model, description, tags, stage) and their aliases.
6. ``lifecycle``: experiments deleted at the source are deleted here, last, since
   nothing can be logged into a deleted one.

Resumable and idempotent: every unit (a run, a logged model, a file, a version, an
alias) is written in one transaction and looked up before it is written, so an import
stopped anywhere continues where it stopped when run again, and a second run writes
nothing. A file is there once its row is (the row is written after the last byte), and
is copied again if its size differs. Units that cannot be written (a run id another
project holds, a version number already taken by a different version) are warnings, and
the import goes on; `--verify` lists what differs.

A run already imported is not read again: runs still going on at the source when they
were imported keep what they had then. The listing of the runs (their params and tags,
not their histories) is held in memory; histories are read one run at a time.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database
from app.errors import AlreadyExistsError, DomainError, NotFoundError
from app.importing.mlflow_source import ArtifactRoot, MlflowSource
from app.importing.progress import ImportProgress
from app.models import (
    Candidate,
    CandidateStatus,
    LifecycleState,
    LoggedModel,
    Model,
    Package,
    Project,
    VersionStage,
)
from app.services import candidates, logged_models, models, packages, projects, versions
from app.services.actor import OPERATOR
from app.services.candidates import MetricPoint
from app.storage import ArtifactStore

RUN_NAME_TAG = "mlflow.runName"
SEMVER_TAG = "modelreg.semver"
SOURCE_RUN_ID_KEY = "mlflow.source.run_id"
SOURCE_MODEL_ID_KEY = "mlflow.source.model_id"
DEFAULT_EXPERIMENT_ID = "0"
# What one service call may log at once (candidates.MAX_*_PER_BATCH).
METRICS_PER_BATCH = candidates.MAX_METRICS_PER_BATCH
KEY_VALUES_PER_BATCH = candidates.MAX_PARAMS_PER_BATCH


@dataclass(frozen=True)
class ImportOptions:
    """What to import: experiments and registered models by name (experiments by id
    too), all when None; runs started at or after `since_ms` only; `dry_run` counts
    what would be written and writes nothing."""

    experiments: frozenset[str] | None = None
    models: frozenset[str] | None = None
    since_ms: int | None = None
    dry_run: bool = False


@dataclass
class ImportSummary:
    """Per kind, how many were written and how many were there already."""

    written: Counter[str] = field(default_factory=Counter)
    existing: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            "written": dict(sorted(self.written.items())),
            "existing": dict(sorted(self.existing.items())),
            "skipped": dict(sorted(self.skipped.items())),
        }


def metric_value(raw: Any) -> float:
    """A metric value as MLflow's JSON carries it: a number, or "NaN"/"Infinity"."""
    return float(raw)


def point_of(name: str, raw: dict[str, Any]) -> MetricPoint:
    return MetricPoint(
        name=name,
        value=metric_value(raw.get("value", 0.0)),
        timestamp=int(raw.get("timestamp", 0)),
        step=int(raw.get("step", 0)),
        logged_model_eid=raw.get("model_id") or None,
        dataset_name=raw.get("dataset_name") or None,
        dataset_digest=raw.get("dataset_digest") or None,
    )


def key_values(entries: Sequence[dict[str, Any]] | None) -> dict[str, str]:
    return {entry["key"]: str(entry.get("value", "")) for entry in entries or ()}


def run_inputs(run: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, key, payload) of a run's dataset and model inputs and model outputs, keyed
    as the MLflow surface keys them (app/mlflow/runs.py)."""
    entries: list[tuple[str, str, dict[str, Any]]] = []
    inputs = run.get("inputs") or {}
    for dataset_input in inputs.get("dataset_inputs", []):
        dataset = dataset_input.get("dataset", {})
        entries.append(
            ("dataset_input", f"{dataset.get('name')}:{dataset.get('digest', '')}", dataset_input)
        )
    for model_input in inputs.get("model_inputs", []):
        entries.append(("model_input", str(model_input["model_id"]), model_input))
    for output in (run.get("outputs") or {}).get("model_outputs", []):
        entries.append(("model_output", f"{output['model_id']}:{output.get('step', 0)}", output))
    return entries


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


@dataclass
class _Owner:
    """A run or logged model whose files are copied: where they are read and written."""

    kind: str
    eid: str
    root: ArtifactRoot


class MlflowImport:
    """One import from `source` into the project at `project_path`."""

    def __init__(
        self,
        source: MlflowSource,
        database: Database,
        store: ArtifactStore,
        *,
        project_path: str,
        options: ImportOptions,
        progress: ImportProgress,
    ) -> None:
        self.source = source
        self.database = database
        self.store = store
        self.project_path = project_path
        self.options = options
        self.progress = progress
        self.summary = ImportSummary()
        self._project: Project | None = None
        # Source experiment id -> destination model id.
        self._models: dict[str, int] = {}
        self._experiments: list[dict[str, Any]] = []

    @property
    def project(self) -> Project:
        assert self._project is not None
        return self._project

    async def run(self) -> ImportSummary:
        async with self.database.session(read_only=True) as session:
            self._project = await projects.get_project(session, path=self.project_path)
        await self._import_experiments()
        runs = [run async for run in self._source_runs()]
        await self._import_runs(runs)
        source_logged_models = await self._source_logged_models()
        await self._import_logged_models(source_logged_models)
        owners = [_Owner("run", run["info"]["run_id"], self._run_root(run)) for run in runs] + [
            _Owner("logged model", model["info"]["model_id"], self._logged_model_root(model))
            for model in source_logged_models
        ]
        await self._import_artifacts(owners)
        await self._import_registry()
        await self._apply_lifecycle()
        return self.summary

    # --- reading the source ------------------------------------------------------------

    def _wanted_experiment(self, experiment: dict[str, Any]) -> bool:
        wanted = self.options.experiments
        return (
            wanted is None or experiment["experiment_id"] in wanted or experiment["name"] in wanted
        )

    async def _source_runs(self) -> AsyncIterator[dict[str, Any]]:
        if not self._models:
            return
        async for run in self.source.runs(list(self._models), since_ms=self.options.since_ms):
            yield run

    async def _source_logged_models(self) -> list[dict[str, Any]]:
        if not self._models:
            return []
        return [model async for model in self.source.logged_models(list(self._models))]

    def _run_root(self, run: dict[str, Any]) -> ArtifactRoot:
        info = run["info"]
        return self.source.artifact_root(info.get("artifact_uri", ""), run_id=info["run_id"])

    def _logged_model_root(self, model: dict[str, Any]) -> ArtifactRoot:
        return self.source.artifact_root(model["info"].get("artifact_uri", ""))

    # --- experiments ---------------------------------------------------------------------

    async def _import_experiments(self) -> None:
        self._experiments = [
            e for e in await self.source.experiments() if self._wanted_experiment(e)
        ]
        self.progress.start_phase("experiments", len(self._experiments))
        for experiment in self._experiments:
            try:
                self._models[experiment["experiment_id"]] = await self._import_experiment(
                    experiment
                )
            except DomainError as error:
                self.summary.skipped["experiments"] += 1
                self.progress.warn(
                    f"experiment '{experiment['name']}' and its runs not imported: {error.message}"
                )
            await self.progress.advance("experiments")

    async def _import_experiment(self, experiment: dict[str, Any]) -> int:
        """The id of the experiment's model here (-1 in a dry run when it is new)."""
        tags = key_values(experiment.get("tags"))
        async with self.database.session(read_only=self.options.dry_run) as session:
            try:
                if experiment["experiment_id"] == DEFAULT_EXPERIMENT_ID:
                    model = await models.get_model(session, project=self.project, iid=0)
                else:
                    model = await models.get_experiment(
                        session, project=self.project, display_name=experiment["name"]
                    )
                self.summary.existing["experiments"] += 1
            except NotFoundError:
                self.summary.written["experiments"] += 1
                if self.options.dry_run:
                    return -1
                model = await models.create_experiment(
                    session, project=self.project, display_name=experiment["name"], actor=OPERATOR
                )
            if self.options.dry_run:
                return model.id
            current = await models.get_model_metadata(session, model=model)
            changed = {key: value for key, value in tags.items() if current.get(key) != value}
            if changed:
                self.summary.written["experiment tags"] += len(changed)
                await models.set_model_metadata(session, model=model, items=changed, actor=OPERATOR)
            return model.id

    async def _apply_lifecycle(self) -> None:
        deleted = [e for e in self._experiments if e.get("lifecycle_stage") == "deleted"]
        self.progress.start_phase("lifecycle", len(deleted))
        for experiment in deleted:
            model_id = self._models.get(experiment["experiment_id"])
            if model_id is not None and model_id > 0 and not self.options.dry_run:
                async with self.database.session() as session:
                    model = await session.get_one(Model, model_id)
                    if models.experiment_state(model) is LifecycleState.ACTIVE:
                        try:
                            await models.delete_model(session, model=model, actor=OPERATOR)
                        except DomainError as error:
                            self.progress.warn(
                                f"experiment '{experiment['name']}' stays active: {error.message}"
                            )
                        else:
                            self.summary.written["experiment deletions"] += 1
            await self.progress.advance("lifecycle")

    # --- runs ------------------------------------------------------------------------------

    async def _import_runs(self, runs: list[dict[str, Any]]) -> None:
        self.progress.start_phase("runs", len(runs))
        for run in runs:
            await self._import_run(run)
            await self.progress.advance("runs")

    async def _existing_candidate(self, session: AsyncSession, run_id: str) -> Candidate | None:
        try:
            return await candidates.get_candidate(
                session, project=self.project, eid=run_id, include_deleted=True
            )
        except NotFoundError:
            return None

    async def _import_run(self, run: dict[str, Any]) -> None:
        info = run["info"]
        run_id = info["run_id"]
        async with self.database.session(read_only=True) as session:
            if await self._existing_candidate(session, run_id) is not None:
                self.summary.existing["runs"] += 1
                return
        if self.options.dry_run:
            self.summary.written["runs"] += 1
            return
        data = run.get("data") or {}
        # Read whole before the transaction: no write lock is held while the source answers.
        histories = {
            metric["key"]: await self.source.metric_history(run_id, metric["key"])
            for metric in data.get("metrics", [])
        }
        points = [point_of(name, raw) for name, history in histories.items() for raw in history]
        tags = key_values(data.get("tags"))
        run_name = info.get("run_name") or tags.get(RUN_NAME_TAG)
        tags.pop(RUN_NAME_TAG, None)
        params = list(key_values(data.get("params")).items())
        try:
            async with self.database.session() as session:
                model = await session.get_one(Model, self._models[info["experiment_id"]])
                candidate = await candidates.create_candidate(
                    session,
                    model=model,
                    name=run_name,
                    status=CandidateStatus(info.get("status", "FINISHED")),
                    start_time=int(info.get("start_time") or 0),
                    eid=run_id,
                    actor=OPERATOR,
                )
                for chunk in _chunks(params, KEY_VALUES_PER_BATCH):
                    await candidates.log_batch(
                        session, candidate=candidate, params=chunk, actor=OPERATOR
                    )
                for chunk in _chunks(list(tags.items()), KEY_VALUES_PER_BATCH):
                    await candidates.log_batch(
                        session, candidate=candidate, tags=chunk, actor=OPERATOR
                    )
                for chunk in _chunks(points, METRICS_PER_BATCH):
                    await candidates.log_batch(
                        session, candidate=candidate, metrics=chunk, actor=OPERATOR
                    )
                await candidates.record_inputs(
                    session, candidate=candidate, entries=run_inputs(run), actor=OPERATOR
                )
                if info.get("end_time"):
                    await candidates.update_candidate(
                        session, candidate=candidate, end_time=int(info["end_time"]), actor=OPERATOR
                    )
                if info.get("lifecycle_stage") == "deleted":
                    await candidates.delete_candidate(session, candidate=candidate, actor=OPERATOR)
        except DomainError as error:
            self.summary.skipped["runs"] += 1
            self.progress.warn(f"run {run_id} not imported: {error.message}")
            return
        self.summary.written["runs"] += 1
        self.summary.written["metric points"] += len(points)
        self.summary.written["params"] += len(params)

    # --- logged models ---------------------------------------------------------------------

    async def _import_logged_models(self, source_models: list[dict[str, Any]]) -> None:
        self.progress.start_phase("logged models", len(source_models))
        for source_model in source_models:
            await self._import_logged_model(source_model)
            await self.progress.advance("logged models")

    async def _import_logged_model(self, source_model: dict[str, Any]) -> None:
        info = source_model["info"]
        eid = info["model_id"]
        async with self.database.session(read_only=self.options.dry_run) as session:
            try:
                await logged_models.get_logged_model(
                    session, project=self.project, eid=eid, include_deleted=True
                )
                self.summary.existing["logged models"] += 1
                return
            except NotFoundError:
                pass
            self.summary.written["logged models"] += 1
            if self.options.dry_run:
                return
            model = await session.get_one(Model, self._models[info["experiment_id"]])
            run_id = info.get("source_run_id") or None
            source_candidate = await self._existing_candidate(session, run_id) if run_id else None
            params = key_values((source_model.get("data") or {}).get("params"))
            logged_model = await logged_models.create_logged_model(
                session,
                model=model,
                name=info.get("name"),
                model_type=info.get("model_type") or None,
                source_candidate=source_candidate,
                source_run_id=run_id if source_candidate is None else None,
                params=params,
                tags=key_values(info.get("tags")),
                eid=eid,
                actor=OPERATOR,
            )
            status = info.get("status", logged_models.PENDING)
            if status != logged_models.PENDING:
                await logged_models.finalize_logged_model(
                    session,
                    logged_model=logged_model,
                    status_name=status,
                    message=info.get("status_message") or None,
                    actor=OPERATOR,
                )

    # --- artifacts -------------------------------------------------------------------------

    async def _import_artifacts(self, owners: list[_Owner]) -> None:
        self.progress.start_phase("artifacts", len(owners))
        for owner in owners:
            await self._import_files(owner)
            await self.progress.advance("artifacts")

    async def _stored_sizes(self, owner: _Owner) -> dict[str, int] | None:
        """The files the owner holds here (path -> size), or None if it is not here."""
        async with self.database.session(read_only=True) as session:
            target: Candidate | LoggedModel | None
            if owner.kind == "run":
                target = await self._existing_candidate(session, owner.eid)
            else:
                try:
                    target = await logged_models.get_logged_model(
                        session, project=self.project, eid=owner.eid, include_deleted=True
                    )
                except NotFoundError:
                    target = None
            if target is None:
                return None
            if target.package_id is None:
                return {}
            package = await session.get_one(Package, target.package_id)
            return {f.path: f.size for f in await packages.list_files(session, package=package)}

    async def _import_files(self, owner: _Owner) -> None:
        stored = await self._stored_sizes(owner)
        if stored is None and not self.options.dry_run:
            return  # not imported (a warning said why)
        async for file in self.source.artifact_files(owner.root):
            if stored is not None and stored.get(file.path) == file.size:
                self.summary.existing["artifact files"] += 1
                continue
            self.summary.written["artifact files"] += 1
            if self.options.dry_run:
                continue
            async with self.source.artifact_stream(owner.root, file.path) as chunks:
                written = await packages.store_file(
                    self.database,
                    self.store,
                    project_id=self.project.id,
                    package_of=self._package_resolver(owner),
                    path=file.path,
                    body=chunks,
                    size_hint=file.size,
                )
            self.summary.written["artifact bytes"] += written.size
            await self.progress.advance("artifacts", 0, size=written.size)

    def _package_resolver(self, owner: _Owner) -> packages.PackageResolver:
        async def package_of(session: AsyncSession) -> Package:
            if owner.kind == "run":
                candidate = await candidates.get_candidate(
                    session, project=self.project, eid=owner.eid, include_deleted=True
                )
                return await packages.candidate_package(session, candidate=candidate)
            logged_model = await logged_models.get_logged_model(
                session, project=self.project, eid=owner.eid, include_deleted=True
            )
            return await packages.logged_model_package(session, logged_model=logged_model)

        return package_of

    # --- registry --------------------------------------------------------------------------

    async def _import_registry(self) -> None:
        wanted = self.options.models
        registered = [
            model
            async for model in self.source.registered_models()
            if wanted is None or model["name"] in wanted
        ]
        self.progress.start_phase("registry", len(registered))
        for registered_model in registered:
            try:
                await self._import_registered_model(registered_model)
            except DomainError as error:
                self.summary.skipped["registered models"] += 1
                self.progress.warn(
                    f"registered model '{registered_model['name']}' not imported: {error.message}"
                )
            await self.progress.advance("registry")

    async def _import_registered_model(self, source_model: dict[str, Any]) -> None:
        name = source_model["name"]
        description = source_model.get("description") or None
        tags = key_values(source_model.get("tags"))
        async with self.database.session(read_only=self.options.dry_run) as session:
            try:
                model: Model | None = await models.get_model(
                    session, project=self.project, display_name=name
                )
            except NotFoundError:
                model = None
            if self.options.dry_run:
                self.summary.written["registered models"] += model is None or not model.registered
                return await self._count_versions(session, model, name)
            if model is None:
                model = await models.create_model(
                    session,
                    project=self.project,
                    display_name=name,
                    description=description,
                    registered=True,
                    experiment=False,
                    actor=OPERATOR,
                )
                self.summary.written["registered models"] += 1
            elif not model.registered:
                await models.register_model(session, model=model, actor=OPERATOR)
                self.summary.written["registered models"] += 1
            else:
                self.summary.existing["registered models"] += 1
            if description is not None and model.description != description:
                await models.update_model(
                    session, model=model, description=description, actor=OPERATOR
                )
            current = await models.get_model_metadata(session, model=model)
            changed = {key: value for key, value in tags.items() if current.get(key) != value}
            if changed:
                await models.set_model_metadata(session, model=model, items=changed, actor=OPERATOR)
            model_id = model.id
        for source_version in await self.source.model_versions(name):
            await self._import_version(model_id, source_version)
        aliases = {
            entry["alias"]: int(entry["version"]) for entry in source_model.get("aliases", [])
        }
        for alias, number in sorted(aliases.items()):
            await self._import_alias(model_id, alias, number)

    async def _count_versions(self, session: AsyncSession, model: Model | None, name: str) -> None:
        for source_version in await self.source.model_versions(name):
            exists = False
            if model is not None:
                try:
                    await versions.get_version(
                        session, model=model, number=int(source_version["version"])
                    )
                    exists = True
                except NotFoundError:
                    pass
            (self.summary.existing if exists else self.summary.written)["model versions"] += 1

    async def _import_version(self, model_id: int, source_version: dict[str, Any]) -> None:
        number = int(source_version["version"])
        async with self.database.session() as session:
            model = await session.get_one(Model, model_id)
            try:
                await versions.get_version(session, model=model, number=number)
                self.summary.existing["model versions"] += 1
                return
            except NotFoundError:
                pass
            tags = key_values(source_version.get("tags"))
            semver = tags.pop(SEMVER_TAG, None)
            source = source_version.get("source") or None
            run_id = source_version.get("run_id") or None
            model_eid = source_version.get("model_id") or None
            candidate = None
            if run_id is not None:
                found = await self._existing_candidate(session, run_id)
                # As the MLflow surface does: the run's candidate is promoted if free.
                if (
                    found is not None
                    and found.model_version_id is None
                    and found.state is LifecycleState.ACTIVE
                ):
                    candidate = found
                else:
                    tags[SOURCE_RUN_ID_KEY] = run_id
            logged_model = None
            if model_eid is not None:
                if source != f"models:/{model_eid}":
                    tags[SOURCE_MODEL_ID_KEY] = model_eid
                with contextlib.suppress(NotFoundError):
                    logged_model = await logged_models.get_logged_model(
                        session, project=self.project, eid=model_eid, for_update=True
                    )
            try:
                version = await versions.create_version(
                    session,
                    model=model,
                    candidate=candidate,
                    version=semver,
                    description=source_version.get("description") or None,
                    source=source,
                    metadata=tags,
                    logged_model=logged_model,
                    number=number,
                    actor=OPERATOR,
                )
            except AlreadyExistsError as error:
                self.summary.skipped["model versions"] += 1
                self.progress.warn(
                    f"version {number} of '{model.display_name}' not imported: {error.message}"
                )
                return
            stage = source_version.get("current_stage") or "None"
            if stage != "None":
                await versions.update_version(
                    session, version=version, stage=VersionStage(stage), actor=OPERATOR
                )
            self.summary.written["model versions"] += 1

    async def _import_alias(self, model_id: int, alias: str, number: int) -> None:
        async with self.database.session() as session:
            model = await session.get_one(Model, model_id)
            try:
                target = await versions.get_version(session, model=model, number=number)
            except NotFoundError:
                self.progress.warn(
                    f"alias '{alias}' of '{model.display_name}': no version {number}"
                )
                return
            try:
                current = await versions.get_version(session, model=model, alias=alias)
            except NotFoundError:
                current = None
            if current is not None and current.id == target.id:
                self.summary.existing["aliases"] += 1
                return
            await versions.set_alias(
                session, model=model, alias=alias, version=target, actor=OPERATOR
            )
            self.summary.written["aliases"] += 1


async def import_mlflow_server(
    database: Database,
    store: ArtifactStore,
    *,
    source_url: str,
    token: str | None,
    project_path: str,
    options: ImportOptions,
    progress: ImportProgress,
) -> ImportSummary:
    """Import the MLflow server at `source_url` into the project at `project_path`: what
    `modelreg import-mlflow` and the `import_mlflow` job both run. Raises `SourceError`
    when the server cannot be read."""
    async with MlflowSource(source_url, token=token) as source:
        return await MlflowImport(
            source,
            database,
            store,
            project_path=project_path,
            options=options,
            progress=progress,
        ).run()
