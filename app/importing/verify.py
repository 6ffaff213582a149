"""`--verify`: what differs between an MLflow server and the project it was imported into.

Compared, for what the import options select: the experiments; each run (name, status,
start and end time, lifecycle, params, tags, inputs), each of its metric histories (its
length and its last value, NaN equal to NaN) and each of its artifacts (size and
SHA-256, the source's bytes hashed as they stream); each logged model (status, files);
each registered model, its versions (same numbers, source, run) and its aliases. The
counts of every kind on both sides are reported with the differences; none is expected
after an import that ended without warnings.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from app.db import Database
from app.errors import NotFoundError
from app.importing.mlflow_source import ArtifactRoot, MlflowSource
from app.importing.progress import ImportProgress
from app.importing.runner import (
    DEFAULT_EXPERIMENT_ID,
    RUN_NAME_TAG,
    SEMVER_TAG,
    SOURCE_RUN_ID_KEY,
    ImportOptions,
    key_values,
    metric_value,
    run_inputs,
)
from app.models import Candidate, LifecycleState, Package, Project
from app.services import candidates, logged_models, models, packages, projects, versions


@dataclass
class Verification:
    """Counts per kind at the source and here, and every difference found."""

    source: Counter[str] = field(default_factory=Counter)
    destination: Counter[str] = field(default_factory=Counter)
    differences: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": dict(sorted(self.source.items())),
            "destination": dict(sorted(self.destination.items())),
            "differences": self.differences,
        }


def _same_value(left: float, right: float) -> bool:
    return (math.isnan(left) and math.isnan(right)) or left == right


class MlflowVerification:
    def __init__(
        self,
        source: MlflowSource,
        database: Database,
        *,
        project_path: str,
        options: ImportOptions,
        progress: ImportProgress,
    ) -> None:
        self.source = source
        self.database = database
        self.project_path = project_path
        self.options = options
        self.progress = progress
        self.result = Verification()
        self._project: Project | None = None

    @property
    def project(self) -> Project:
        assert self._project is not None
        return self._project

    def _differ(self, message: str) -> None:
        self.result.differences.append(message)

    async def run(self) -> Verification:
        async with self.database.session(read_only=True) as session:
            self._project = await projects.get_project(session, path=self.project_path)
        wanted = self.options.experiments
        experiments = [
            e
            for e in await self.source.experiments()
            if wanted is None or e["experiment_id"] in wanted or e["name"] in wanted
        ]
        experiment_ids = [e["experiment_id"] for e in experiments]
        await self._experiments(experiments)
        runs = (
            [run async for run in self.source.runs(experiment_ids, since_ms=self.options.since_ms)]
            if experiment_ids
            else []
        )
        self.progress.start_phase("verify runs", len(runs))
        for run in runs:
            await self._run(run)
            await self.progress.advance("verify runs")
        source_models = (
            [m async for m in self.source.logged_models(experiment_ids)] if experiment_ids else []
        )
        self.progress.start_phase("verify models", len(source_models))
        for source_model in source_models:
            await self._logged_model(source_model)
            await self.progress.advance("verify models")
        await self._registry()
        return self.result

    async def _experiments(self, experiments: list[dict[str, Any]]) -> None:
        async with self.database.session(read_only=True) as session:
            for experiment in experiments:
                self.result.source["experiments"] += 1
                try:
                    if experiment["experiment_id"] == DEFAULT_EXPERIMENT_ID:
                        model = await models.get_model(session, project=self.project, iid=0)
                    else:
                        model = await models.get_experiment(
                            session, project=self.project, display_name=experiment["name"]
                        )
                except NotFoundError:
                    self._differ(f"experiment '{experiment['name']}' is missing")
                    continue
                self.result.destination["experiments"] += 1
                deleted = models.experiment_state(model) is LifecycleState.DELETED
                if deleted != (experiment.get("lifecycle_stage") == "deleted"):
                    self._differ(f"experiment '{experiment['name']}' lifecycle differs")
                tags = key_values(experiment.get("tags"))
                here = await models.get_model_metadata(session, model=model)
                for key, value in tags.items():
                    if here.get(key) != value:
                        self._differ(f"experiment '{experiment['name']}' tag '{key}' differs")

    async def _run(self, run: dict[str, Any]) -> None:
        info, data = run["info"], run.get("data") or {}
        run_id = info["run_id"]
        self.result.source["runs"] += 1
        async with self.database.session(read_only=True) as session:
            try:
                candidate = await candidates.get_candidate(
                    session, project=self.project, eid=run_id, include_deleted=True
                )
            except NotFoundError:
                self._differ(f"run {run_id} is missing")
                return
            self.result.destination["runs"] += 1
            tags = key_values(data.get("tags"))
            name = info.get("run_name") or tags.get(RUN_NAME_TAG)
            tags.pop(RUN_NAME_TAG, None)
            fields = {
                "name": (name, candidate.name),
                "status": (info.get("status"), candidate.status.value),
                "start time": (int(info.get("start_time") or 0), candidate.start_time),
                "end time": (
                    int(info["end_time"]) if info.get("end_time") else None,
                    candidate.end_time,
                ),
                "lifecycle": (
                    info.get("lifecycle_stage") == "deleted",
                    candidate.state is LifecycleState.DELETED,
                ),
            }
            for label, (there, here_value) in fields.items():
                if there != here_value:
                    self._differ(f"run {run_id}: {label} {there!r} here {here_value!r}")
            self._compare_pairs(
                f"run {run_id} params",
                key_values(data.get("params")),
                await candidates.get_params(session, candidate=candidate),
                "params",
            )
            self._compare_pairs(
                f"run {run_id} tags",
                tags,
                await candidates.get_metadata(session, candidate=candidate),
                "tags",
            )
            inputs = (await candidates.get_inputs_of(session, candidate_ids=[candidate.id]))[
                candidate.id
            ]
            self.result.source["inputs"] += len(run_inputs(run))
            self.result.destination["inputs"] += len(inputs)
            if len(inputs) != len(run_inputs(run)):
                self._differ(f"run {run_id}: {len(run_inputs(run))} inputs, here {len(inputs)}")
            await self._histories(session, candidate, data.get("metrics", []))
            package_id = candidate.package_id
        await self._files(
            f"run {run_id}",
            self.source.artifact_root(info.get("artifact_uri", ""), run_id=run_id),
            package_id,
        )

    def _compare_pairs(
        self, label: str, there: dict[str, str], here: dict[str, str], kind: str
    ) -> None:
        self.result.source[kind] += len(there)
        self.result.destination[kind] += len(here)
        if there != here:
            keys = sorted(
                set(there) ^ set(here) | {k for k in there if k in here and there[k] != here[k]}
            )
            self._differ(f"{label} differ: {', '.join(keys[:10])}")

    async def _histories(
        self, session: Any, candidate: Candidate, metrics: list[dict[str, Any]]
    ) -> None:
        for metric in metrics:
            key = metric["key"]
            there = await self.source.metric_history(candidate.eid, key)
            here = await candidates.get_metric_history(session, candidate=candidate, name=key)
            self.result.source["metric histories"] += 1
            self.result.source["metric points"] += len(there)
            self.result.destination["metric histories"] += 1 if here else 0
            self.result.destination["metric points"] += len(here)
            if len(there) != len(here):
                self._differ(
                    f"run {candidate.eid} metric '{key}': {len(there)} points, here {len(here)}"
                )
                continue
            if not there:
                continue
            last = max(
                there, key=lambda point: (int(point.get("step", 0)), int(point.get("timestamp", 0)))
            )
            if not _same_value(metric_value(last.get("value", 0.0)), here[-1].value):
                self._differ(
                    f"run {candidate.eid} metric '{key}': last value {last.get('value')} "
                    f"here {here[-1].value}"
                )

    async def _files(self, label: str, root: ArtifactRoot, package_id: int | None) -> None:
        here: dict[str, tuple[int, str]] = {}
        if package_id is not None:
            async with self.database.session(read_only=True) as session:
                package = await session.get_one(Package, package_id)

                for stored in await packages.list_files(session, package=package):
                    here[stored.path] = (stored.size, stored.sha256 or "")
        self.result.destination["artifact files"] += len(here)
        seen: set[str] = set()
        async for file in self.source.artifact_files(root):
            seen.add(file.path)
            self.result.source["artifact files"] += 1
            digest = hashlib.sha256()
            size = 0
            async with self.source.artifact_stream(root, file.path) as chunks:
                async for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
            self.result.source["artifact bytes"] += size
            if file.path not in here:
                self._differ(f"{label}: artifact '{file.path}' is missing")
            elif here[file.path] != (size, digest.hexdigest()):
                self._differ(f"{label}: artifact '{file.path}' differs (size or SHA-256)")
            else:
                self.result.destination["artifact bytes"] += size
        for path in sorted(set(here) - seen):
            self._differ(f"{label}: artifact '{path}' is not at the source")

    async def _logged_model(self, source_model: dict[str, Any]) -> None:
        info = source_model["info"]
        eid = info["model_id"]
        self.result.source["logged models"] += 1
        async with self.database.session(read_only=True) as session:
            try:
                found = await logged_models.get_logged_model(
                    session, project=self.project, eid=eid, include_deleted=True
                )
            except NotFoundError:
                self._differ(f"logged model {eid} is missing")
                return
        self.result.destination["logged models"] += 1
        if found.status != info.get("status", found.status):
            self._differ(f"logged model {eid}: status {info.get('status')} here {found.status}")
        root = self.source.artifact_root(info.get("artifact_uri", ""))
        await self._files(f"logged model {eid}", root, found.package_id)

    async def _registry(self) -> None:
        wanted = self.options.models
        async for source_model in self.source.registered_models():
            name = source_model["name"]
            if wanted is not None and name not in wanted:
                continue
            self.result.source["registered models"] += 1
            source_versions = await self.source.model_versions(name)
            aliases = {
                entry["alias"]: int(entry["version"]) for entry in source_model.get("aliases", [])
            }
            self.result.source["model versions"] += len(source_versions)
            self.result.source["aliases"] += len(aliases)
            async with self.database.session(read_only=True) as session:
                try:
                    model = await models.get_registered_model(
                        session, project=self.project, display_name=name
                    )
                except NotFoundError:
                    self._differ(f"registered model '{name}' is missing")
                    continue
                self.result.destination["registered models"] += 1
                for source_version in source_versions:
                    number = int(source_version["version"])
                    try:
                        version = await versions.get_version(session, model=model, number=number)
                    except NotFoundError:
                        self._differ(f"version {number} of '{name}' is missing")
                        continue
                    self.result.destination["model versions"] += 1
                    if version.source != (source_version.get("source") or None):
                        self._differ(f"version {number} of '{name}': source differs")
                    run_id = source_version.get("run_id") or None
                    metadata = await versions.get_version_metadata(session, version=version)
                    candidate = await versions.get_version_candidate(session, version=version)
                    linked = metadata.get(SOURCE_RUN_ID_KEY, candidate.eid)
                    if run_id is not None and linked != run_id:
                        self._differ(f"version {number} of '{name}': run {run_id} here {linked}")
                    semver = key_values(source_version.get("tags")).get(SEMVER_TAG)
                    if semver is not None and version.version != semver:
                        self._differ(
                            f"version {number} of '{name}': semver {semver} here {version.version}"
                        )
                for alias, number in aliases.items():
                    try:
                        target = await versions.get_version(session, model=model, alias=alias)
                    except NotFoundError:
                        self._differ(f"alias '{alias}' of '{name}' is missing")
                        continue
                    self.result.destination["aliases"] += 1
                    if target.number != number:
                        self._differ(
                            f"alias '{alias}' of '{name}': version {number} here {target.number}"
                        )
