"""MLflow's model registry: registered models, model versions and aliases.

Experiments are models, so a registered model is one of our models, addressed by its
display name, and shown here once it is registered (created here, or given a version).
MLflow keeps the two in separate namespaces; so does this surface: a model created here
is no experiment (the experiment API does not list it) until one is created under its
name.

Registered models

* Creating a registered model whose name an experiment holds, active or deleted,
  registers that model: its candidates, versions and metadata stay; the description and
  tags given are added. A name already registered is RESOURCE_ALREADY_EXISTS.
* Renaming renames the model (the experiment too); its slug stays.
* Deleting is for good, as MLflow's: the model leaves the registry at once, its versions
  are destroyed as deleting a version destroys them and its aliases go, and the name is
  free for a new registered model. A model that is also an experiment stays one, with
  its runs and their data (and its tags, which are the experiment's too); any other
  model is destroyed (GraphQL's `modelDelete`).
* Tags are the model's metadata: the same entries as the experiment's tags.

Model versions

* MLflow's integer version is the version's sequential number. Where a `version`
  parameter is expected, the semver ("1.2.0") finds the version as well.
* The semver is `<number>.0.0` unless the version tag ``modelreg.semver`` chooses it at
  creation (a semantic version such as ``2.1.0-rc.1``). That tag is not stored as a tag:
  it becomes the version's semver. It cannot be set or deleted afterwards.
* Deleting a version is for good, as MLflow's hard delete: it and its aliases are gone at
  once, its semver is free again, its number is never reused, and a job removes its
  package with the package's files (GraphQL's `modelVersionDelete`, one rule for both).
* Every version owns one candidate. With `run_id` (or a ``runs:/<run id>/...`` source, or
  a ``models:/m-...`` source whose logged model came from a run) the run's candidate is
  promoted. MLflow lets one run back several versions, we let a candidate back one: when
  the run's candidate already backs a version (or is deleted), or no run has that id
  (MLflow's registry does not check it), the new version gets a fresh candidate and the
  run id is kept in the version metadata ``mlflow.source.run_id``, which renders as
  `run_id` (and is hidden from the tags). Without a run the version gets a fresh
  candidate, whose id is the version's `run_id`. A `model_id` not already in the source
  is kept the same way in ``mlflow.source.model_id``.
* A version made from a logged model (`model_id`, or a ``models:/m-...`` source) is
  appended to that logged model's ``mlflow.modelVersions`` tag, a JSON list of
  ``{"name", "version"}``, as MLflow's server does.
* `source` is stored as given (``runs:/``, ``models:/m-...``, ``mlflow-artifacts:/``,
  ``s3://``...). As MLflow's server does, local paths and ``..`` segments are refused, a
  ``runs:/`` or ``models:/m-`` source must agree with `run_id` and `model_id`, and a
  ``models:/<name>/<version, stage or latest>`` or ``models:/<name>@<alias>`` source must
  name an existing version: it is stored as ``models:/<name>/<number>``.
* get-download-uri resolves the source to an artifact URI the artifact proxy serves:
  ``runs:/<run id>/<path>`` becomes ``mlflow-artifacts:/<experiment id>/<run id>/
  artifacts/<path>``, ``models:/m-<id>`` the logged model's artifact location, a
  ``models:/<name>/<number>`` source that version's download URI; anything else is
  returned as is.
* Versions are always READY. Stages are case-insensitive (``staging`` is Staging).

Aliases follow MLflow: `latest` and names like `v1` are reserved, get-by-alias `latest`
is the highest version, and an unknown alias is INVALID_PARAMETER_VALUE. Deleting a tag or
an alias that does not exist is no error, as in MLflow.
"""

from __future__ import annotations

import contextlib
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import AlreadyExistsError, InvalidValueError, NotFoundError
from app.mlflow import protocol
from app.mlflow.call import Call, Endpoint, MissingParameterError
from app.mlflow.runs import find_run
from app.models import (
    LifecycleState,
    LoggedModel,
    Model,
    ModelMetadata,
    ModelVersion,
    ModelVersionMetadata,
    Project,
    VersionStage,
)
from app.search import models as model_search
from app.search import paging
from app.search import versions as version_search
from app.services import (
    candidates,
    key_values,
    logged_models,
    models,
    users,
    validation,
    versions,
)
from app.services.policy import Operation

# The version tag that chooses a version's semver at creation.
SEMVER_TAG = "modelreg.semver"
# Version metadata that stands in for the run and the logged model a version came from
# when its candidate cannot be that run's (see the module docstring).
SOURCE_RUN_ID_KEY = version_search.SOURCE_RUN_ID_KEY
SOURCE_MODEL_ID_KEY = "mlflow.source.model_id"
HIDDEN_VERSION_TAGS = frozenset({SOURCE_RUN_ID_KEY, SOURCE_MODEL_ID_KEY})
RESERVED_VERSION_TAGS = HIDDEN_VERSION_TAGS | {SEMVER_TAG}

STAGES = {stage.value.lower(): stage for stage in VersionStage}
ACTIVE_STAGES = (VersionStage.STAGING, VersionStage.PRODUCTION)
LATEST_ALIAS = "latest"
# Version numbers are 32-bit in the database; larger ones cannot exist.
MAX_VERSION_NUMBER = 2**31 - 1
# Page offsets beyond this cannot be real and overflow the databases' integers.
# How many `models:/<name>/<number>` hops get-download-uri follows.
MAX_SOURCE_HOPS = 8

_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")


# --- Parameters ---------------------------------------------------------------------------


def _model_name(call: Call, field: str = "name") -> str:
    """A registered model name as MLflow allows it."""
    name = call.required(field)
    if not name.strip():
        raise MissingParameterError(field)
    if "/" in name or ":" in name:
        raise InvalidValueError(
            f"Invalid model name '{name}'. Names cannot contain '/' or ':'.", field=field
        )
    if name.strip() in (".", ".."):
        raise InvalidValueError(f"Invalid value '{name}' for parameter '{field}'", field=field)
    return name


def _version_reference(call: Call) -> int | str:
    """The `version` parameter: MLflow's integer version, or a semver."""
    value = call.params.get("version")
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or value == "":
        raise MissingParameterError("version")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        if _INTEGER.match(value):
            return int(value)
        try:
            return validation.semver(value.strip())
        except InvalidValueError:
            pass
    raise InvalidValueError(
        f"Parameter 'version' must be an integer, got '{value}'.", field="version"
    )


def _stage(value: str) -> VersionStage:
    stage = STAGES.get(value.strip().lower())
    if stage is None:
        raise InvalidValueError(
            f"Invalid Model Version stage: {value}. Value must be one of "
            f"{', '.join(stage.value for stage in VersionStage)}.",
            field="stage",
        )
    return stage


def _description(call: Call) -> str | None:
    """The description when the call sets one ("" clears it), None when it does not."""
    if call.params.get("description") is None:
        return None
    return call.string("description") or ""


# --- Lookups ------------------------------------------------------------------------------


async def _model_named(
    session: AsyncSession, project: Project, name: str, *, include_deleted: bool = False
) -> Model | None:
    try:
        return await models.get_model(
            session, project=project, display_name=name, include_deleted=include_deleted
        )
    except NotFoundError:
        return None


async def find_registered_model(session: AsyncSession, project: Project, name: str) -> Model:
    try:
        return await models.get_registered_model(session, project=project, display_name=name)
    except NotFoundError:
        raise NotFoundError(f"Registered Model with name={name} not found", field="name") from None


async def find_version(session: AsyncSession, model: Model, reference: int | str) -> ModelVersion:
    """A version by its number (MLflow's version) or its semver."""
    not_found = NotFoundError(
        f"Model Version (name={model.display_name}, version={reference}) not found",
        field="version",
    )
    if isinstance(reference, int) and not 0 < reference <= MAX_VERSION_NUMBER:
        raise not_found
    try:
        if isinstance(reference, int):
            return await versions.get_version(session, model=model, number=reference)
        return await versions.get_version(session, model=model, version=reference)
    except NotFoundError:
        raise not_found from None


async def _newest_version(session: AsyncSession, model: Model) -> ModelVersion | None:
    newest = await versions.list_versions(session, model=model, limit=1)
    return newest[0] if newest else None


# --- Rendering ----------------------------------------------------------------------------


def _source_model_id(source: str | None) -> str | None:
    """The logged model id of a ``models:/m-...`` source."""
    if not source or not source.lower().startswith("models:"):
        return None
    try:
        reference = _parse_models_uri(source)
    except InvalidValueError:
        return None
    return reference.model_id


async def render_versions(
    session: AsyncSession, rows: Sequence[ModelVersion]
) -> list[dict[str, Any]]:
    """Model versions as MLflow renders them, with one query per kind of data."""
    if not rows:
        return []
    ids = [row.id for row in rows]
    owners = await models.get_models(session, ids={row.model_id for row in rows})
    tags = await key_values.read_many(session, ModelVersionMetadata, owner_ids=ids)
    aliases = await versions.aliases_of_versions(session, version_ids=ids)
    runs = await candidates.candidates_of_versions(session, version_ids=ids)
    usernames = await users.usernames(
        session, user_ids={row.created_by_id for row in rows if row.created_by_id is not None}
    )
    rendered = []
    for row in rows:
        entries = tags[row.id]
        body = protocol.model_version(
            row,
            model=owners[row.model_id],
            run_id=entries.get(SOURCE_RUN_ID_KEY) or (runs[row.id].eid if row.id in runs else None),
            tags={k: v for k, v in entries.items() if k not in HIDDEN_VERSION_TAGS},
            aliases=aliases[row.id],
            username=usernames.get(row.created_by_id) if row.created_by_id else None,
        )
        if model_id := entries.get(SOURCE_MODEL_ID_KEY) or _source_model_id(row.source):
            body["model_id"] = model_id
        rendered.append(body)
    return rendered


async def render_registered_models(
    session: AsyncSession, rows: Sequence[Model]
) -> list[dict[str, Any]]:
    """Registered models as MLflow renders them: tags, aliases and the latest version of
    each stage, with one query per kind of data."""
    ids = [row.id for row in rows]
    tags = await key_values.read_many(session, ModelMetadata, owner_ids=ids)
    pointers = await versions.aliases_of_models(session, model_ids=ids)
    pointed = await versions.get_versions(
        session, ids={version_id for entries in pointers.values() for _, version_id in entries}
    )
    aliases = {
        model_id: [
            {"alias": alias, "version": str(pointed[version_id].number)}
            for alias, version_id in entries
            if version_id in pointed
        ]
        for model_id, entries in pointers.items()
    }
    latest = await versions.latest_versions(session, model_ids=ids)
    latest_rows = [version for model_id in ids for version in latest[model_id]]
    rendered_latest = dict(
        zip(
            [version.id for version in latest_rows],
            await render_versions(session, latest_rows),
            strict=True,
        )
    )
    return [
        {
            "name": row.display_name,
            "creation_timestamp": protocol.milliseconds(row.created_at),
            "last_updated_timestamp": protocol.milliseconds(row.updated_at),
            "description": row.description or "",
            "latest_versions": [rendered_latest[version.id] for version in latest[row.id]],
            "tags": protocol.key_values(tags[row.id]),
            "aliases": aliases[row.id],
        }
        for row in rows
    ]


async def _render_model(session: AsyncSession, model: Model) -> dict[str, Any]:
    [rendered] = await render_registered_models(session, [model])
    return rendered


async def _render_version(session: AsyncSession, version: ModelVersion) -> dict[str, Any]:
    [rendered] = await render_versions(session, [version])
    return rendered


# --- Sources ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ModelsUri:
    """A parsed ``models:/`` URI: a logged model, or a registered model's version."""

    model_id: str | None = None
    name: str | None = None
    number: int | None = None
    stage: VersionStage | None = None
    alias: str | None = None
    latest: bool = False


def _invalid_source(source: str, reason: str) -> InvalidValueError:
    return InvalidValueError(f"Invalid model version source: '{source}'. {reason}", field="source")


def _parse_runs_uri(source: str) -> tuple[str, str]:
    """(run id, artifact path) of ``runs:/<run id>/<path>``."""
    parsed = urllib.parse.urlparse(source)
    if parsed.netloc or not parsed.path.startswith("/") or len(parsed.path) <= 1:
        raise _invalid_source(source, "A runs URI looks like runs:/<run_id>/<artifact path>.")
    run_id, _, path = parsed.path[1:].partition("/")
    if not run_id:
        raise _invalid_source(source, "A runs URI looks like runs:/<run_id>/<artifact path>.")
    return run_id, path


def _parse_models_uri(source: str) -> _ModelsUri:
    parsed = urllib.parse.urlparse(source)
    if parsed.netloc:
        raise _invalid_source(source, "Registered model sources must use this model registry.")
    path = parsed.path
    if not path.startswith("/") or len(path) <= 1:
        raise _invalid_source(source, "A models URI looks like models:/<name>/<version>.")
    parts = path[1:].split("/")
    if len(parts) > 2 or not parts[0].strip():
        raise _invalid_source(source, "A models URI looks like models:/<name>/<version>.")
    if len(parts) == 2:
        name, suffix = parts
        if not suffix.strip():
            raise _invalid_source(source, "A models URI looks like models:/<name>/<version>.")
        if suffix.isdigit():
            return _ModelsUri(name=name, number=int(suffix))
        if suffix.lower() == LATEST_ALIAS:
            return _ModelsUri(name=name, latest=True)
        return _ModelsUri(name=name, stage=_stage(suffix))
    if "@" in parts[0]:
        name, alias = parts[0].rsplit("@", 1)
        if not name or not alias:
            raise _invalid_source(source, "A models URI looks like models:/<name>@<alias>.")
        return _ModelsUri(name=name, alias=alias)
    return _ModelsUri(model_id=parts[0])


def _check_source(source: str) -> str:
    """MLflow's server-side source rules: no local paths, no relative segments."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme.lower() in ("", "file"):
        raise _invalid_source(
            source,
            "A local path cannot be a model version source on this server; log the model "
            "as an artifact and register its runs:/ or models:/ URI.",
        )
    if ".." in urllib.parse.unquote(parsed.path).split("/"):
        raise _invalid_source(source, "Sources cannot contain relative path segments ('..').")
    return source


async def _referenced_version(
    session: AsyncSession, project: Project, reference: _ModelsUri
) -> ModelVersion:
    """The version a ``models:/<name>/...`` URI names."""
    assert reference.name is not None
    model = await find_registered_model(session, project, reference.name)
    if reference.number is not None:
        return await find_version(session, model, reference.number)
    if reference.alias is not None:
        if reference.alias.lower() == LATEST_ALIAS:
            newest = await _newest_version(session, model)
            if newest is None:
                raise NotFoundError(f"Latest version not found for model {reference.name}.")
            return newest
        try:
            return await versions.get_version(session, model=model, alias=reference.alias)
        except NotFoundError:
            raise InvalidValueError(
                f"Registered model alias {reference.alias} not found.", field="source"
            ) from None
    stages = None if reference.stage is None else [reference.stage]
    found = (await versions.latest_versions(session, model_ids=[model.id], stages=stages))[model.id]
    if not found:
        where = "" if reference.stage is None else f" in stage {reference.stage.value}"
        raise NotFoundError(f"No versions of model {reference.name}{where} were found.")
    return max(found, key=lambda version: version.number)


async def _logged_model(session: AsyncSession, project: Project, eid: str) -> LoggedModel | None:
    try:
        return await logged_models.get_logged_model(
            session, project=project, eid=eid, include_deleted=True
        )
    except NotFoundError:
        return None


@dataclass
class _Lineage:
    """Where a new version comes from: its stored source, run and logged model."""

    source: str
    run_id: str | None
    model_id: str | None


async def _lineage(
    session: AsyncSession,
    project: Project,
    source: str,
    run_id: str | None,
    model_id: str | None,
) -> _Lineage:
    scheme = urllib.parse.urlparse(source).scheme.lower()
    if scheme == "runs":
        source_run_id, _ = _parse_runs_uri(source)
        if run_id is not None and run_id != source_run_id:
            raise _invalid_source(
                source,
                "The run_id request parameter must identify the resource that contains the source.",
            )
        return _Lineage(source, source_run_id, model_id)
    if scheme != "models":
        return _Lineage(source, run_id, model_id)
    reference = _parse_models_uri(source)
    if reference.model_id is not None:
        if model_id is not None and model_id != reference.model_id:
            raise _invalid_source(
                source,
                "The model_id request parameter must identify the resource that contains "
                "the source.",
            )
        logged_model = await _logged_model(session, project, reference.model_id)
        if logged_model is None:
            raise NotFoundError(
                f"Logged model with ID '{reference.model_id}' not found.", field="model_id"
            )
        if run_id is None and logged_model.source_candidate_id is not None:
            found = await candidates.get_candidates(session, ids=[logged_model.source_candidate_id])
            if logged_model.source_candidate_id in found:
                run_id = found[logged_model.source_candidate_id].eid
        run_id = run_id or logged_model.source_run_eid
        return _Lineage(source, run_id, reference.model_id)
    referenced = await _referenced_version(session, project, reference)
    [rendered] = await render_versions(session, [referenced])
    referenced_run_id = rendered.get("run_id")
    referenced_model_id = rendered.get("model_id")
    if (run_id is not None and run_id != referenced_run_id) or (
        model_id is not None and model_id != referenced_model_id
    ):
        raise _invalid_source(
            source,
            "The run_id and model_id request parameters must match the referenced model version.",
        )
    return _Lineage(
        f"models:/{rendered['name']}/{referenced.number}", referenced_run_id, referenced_model_id
    )


async def download_uri(
    session: AsyncSession, project: Project, version: ModelVersion, *, hops: int = 0
) -> str:
    """The version's source as an artifact URI the artifact proxy serves (see above)."""
    source = version.source or ""
    scheme = urllib.parse.urlparse(source).scheme.lower()
    try:
        if scheme == "runs":
            run_id, path = _parse_runs_uri(source)
            run = await candidates.get_candidate(
                session, project=project, eid=run_id, include_deleted=True
            )
            iids = await models.iids_of(session, model_ids=[run.model_id])
            root = protocol.run_artifact_uri(iids.get(run.model_id, 0), run)
            return f"{root}/{path.strip('/')}" if path.strip("/") else root
        if scheme == "models":
            reference = _parse_models_uri(source)
            if reference.model_id is not None:
                logged_model = await _logged_model(session, project, reference.model_id)
                if logged_model is None:
                    return source
                iids = await models.iids_of(session, model_ids=[logged_model.model_id])
                return protocol.logged_model_artifact_uri(
                    iids.get(logged_model.model_id, 0), logged_model.eid
                )
            if hops < MAX_SOURCE_HOPS:
                referenced = await _referenced_version(session, project, reference)
                if referenced.id != version.id:
                    return await download_uri(session, project, referenced, hops=hops + 1)
    except (InvalidValueError, NotFoundError):
        pass
    return source


# --- Registered models --------------------------------------------------------------------


def _is_prompt(tags: dict[str, str]) -> bool:
    return tags.get(model_search.IS_PROMPT_TAG, "false").lower() == "true"


def _name_taken(name: str, *, existing_is_prompt: bool, new_is_prompt: bool) -> AlreadyExistsError:
    old = "Prompt" if existing_is_prompt else "Registered Model"
    new = "Prompt" if new_is_prompt else "Registered Model"
    if old != new:
        return AlreadyExistsError(
            f"Tried to create a {new.lower()} with name {name!r}, but the name is already "
            f"taken by a {old.lower()}. MLflow does not allow creating a model and a prompt "
            "with the same name.",
            field="name",
        )
    return AlreadyExistsError(f"{new} (name={name}) already exists.", field="name")


async def create_registered_model(call: Call) -> dict[str, Any]:
    name = _model_name(call)
    tags = dict(call.key_values("tags"))
    description = call.string("description")
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await _model_named(session, project, name, include_deleted=True)
        if model is None:
            try:
                model = await models.create_model(
                    session,
                    project=project,
                    display_name=name,
                    description=description,
                    metadata=tags,
                    registered=True,
                    experiment=False,
                    actor=call.actor,
                )
            except AlreadyExistsError:
                raise _name_taken(name, existing_is_prompt=False, new_is_prompt=False) from None
        elif model.registered:
            existing_tags = await models.get_model_metadata(session, model=model)
            raise _name_taken(
                name, existing_is_prompt=_is_prompt(existing_tags), new_is_prompt=_is_prompt(tags)
            )
        else:
            await models.register_model(session, model=model, actor=call.actor)
            if description:
                await models.update_model(
                    session, model=model, description=description, actor=call.actor
                )
            if tags:
                await models.set_model_metadata(session, model=model, items=tags, actor=call.actor)
        return {"registered_model": await _render_model(session, model)}


async def get_registered_model(call: Call) -> dict[str, Any]:
    name = call.required("name")
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        model = await find_registered_model(session, project, name)
        return {"registered_model": await _render_model(session, model)}


async def rename_registered_model(call: Call) -> dict[str, Any]:
    name = call.required("name")
    new_name = _model_name(call, "new_name")
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_registered_model(session, project, name)
        try:
            await models.update_model(session, model=model, display_name=new_name, actor=call.actor)
        except AlreadyExistsError:
            raise AlreadyExistsError(
                f"Registered Model (name={new_name}) already exists.", field="new_name"
            ) from None
        return {"registered_model": await _render_model(session, model)}


async def update_registered_model(call: Call) -> dict[str, Any]:
    name = call.required("name")
    description = _description(call)
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_registered_model(session, project, name)
        await models.update_model(session, model=model, description=description, actor=call.actor)
        return {"registered_model": await _render_model(session, model)}


async def delete_registered_model(call: Call) -> dict[str, Any]:
    name = call.required("name")
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_registered_model(session, project, name)
        await versions.unregister_model(session, model=model, actor=call.actor)
    return {}


async def search_registered_models(call: Call) -> dict[str, Any]:
    page = call.page(
        default=paging.SEARCH_REGISTERED_MODEL_MAX_RESULTS_DEFAULT,
        threshold=paging.SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD,
    )
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        shown, token = await models.search_registered_models(
            session,
            project=project,
            filter_string=call.string("filter"),
            order_by=call.strings("order_by"),
            page=page,
        )
        body: dict[str, Any] = {
            "registered_models": await render_registered_models(session, list(shown))
        }
    if token:
        body["next_page_token"] = token
    return body


async def get_latest_versions(call: Call) -> dict[str, Any]:
    name = call.required("name")
    stages = [_stage(stage) for stage in call.strings("stages")] or None
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        model = await find_registered_model(session, project, name)
        latest = await versions.latest_versions(session, model_ids=[model.id], stages=stages)
        return {"model_versions": await render_versions(session, latest[model.id])}


async def set_registered_model_tag(call: Call) -> dict[str, Any]:
    name = call.required("name")
    key = call.required("key")
    value = call.string("value", default="") or ""
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_registered_model(session, project, name)
        await models.set_model_metadata(session, model=model, items={key: value}, actor=call.actor)
    return {}


async def delete_registered_model_tag(call: Call) -> dict[str, Any]:
    name = call.required("name")
    key = validation.key(call.required("key"), kind="key")
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_registered_model(session, project, name)
        # MLflow: deleting a tag that is not there changes nothing.
        with contextlib.suppress(NotFoundError):
            await models.delete_model_metadata(session, model=model, name=key, actor=call.actor)
    return {}


# --- Aliases ------------------------------------------------------------------------------


async def set_alias(call: Call) -> dict[str, Any]:
    name = call.required("name")
    alias = call.required("alias")
    reference = _version_reference(call)
    validation.alias(alias)
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_registered_model(session, project, name)
        version = await find_version(session, model, reference)
        await versions.set_alias(
            session, model=model, alias=alias, version=version, actor=call.actor
        )
    return {}


async def delete_alias(call: Call) -> dict[str, Any]:
    name = call.required("name")
    alias = validation.alias(call.required("alias"))
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_registered_model(session, project, name)
        # MLflow: deleting an alias that is not there changes nothing.
        with contextlib.suppress(NotFoundError):
            await versions.delete_alias(session, model=model, alias=alias, actor=call.actor)
    return {}


async def get_version_by_alias(call: Call) -> dict[str, Any]:
    name = call.required("name")
    alias = call.required("alias")
    if alias.lower() != LATEST_ALIAS:
        validation.alias(alias)
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        model = await find_registered_model(session, project, name)
        version: ModelVersion | None
        if alias.lower() == LATEST_ALIAS:
            version = await _newest_version(session, model)
            if version is None:
                raise NotFoundError(f"Latest version not found for model {name}.", field="alias")
        else:
            try:
                version = await versions.get_version(session, model=model, alias=alias)
            except NotFoundError:
                raise InvalidValueError(
                    f"Registered model alias {alias} not found.", field="alias"
                ) from None
        return {"model_version": await _render_version(session, version)}


# --- Model versions -----------------------------------------------------------------------


def _check_version_tag_key(key: str) -> None:
    if key in RESERVED_VERSION_TAGS:
        raise InvalidValueError(
            f"The version tag '{key}' is kept by the registry; it cannot be set or deleted",
            field="key",
        )


def _version_tags(call: Call) -> tuple[str | None, dict[str, str]]:
    """The semver the tags choose, and the tags to store."""
    semver = None
    tags: dict[str, str] = {}
    for key, value in call.key_values("tags"):
        if key == SEMVER_TAG:
            semver = validation.semver(value.strip())
        else:
            _check_version_tag_key(key)
            tags[key] = value
    return semver, tags


async def create_model_version(call: Call) -> dict[str, Any]:
    name = call.required("name")
    source = _check_source(call.required("source"))
    run_id = call.string("run_id")
    model_id = call.string("model_id")
    description = call.string("description")
    semver, tags = _version_tags(call)
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_registered_model(session, project, name)
        lineage = await _lineage(session, project, source, run_id, model_id)
        candidate = None
        if lineage.run_id is not None:
            run = None
            # MLflow's registry does not check that the run exists: an unknown one is kept.
            with contextlib.suppress(NotFoundError):
                run = await find_run(session, project, lineage.run_id)
            if (
                run is not None
                and run.model_version_id is None
                and run.state is LifecycleState.ACTIVE
            ):
                candidate = run
            else:
                tags[SOURCE_RUN_ID_KEY] = lineage.run_id
        logged_model = None
        if lineage.model_id is not None:
            if lineage.model_id != _source_model_id(lineage.source):
                tags[SOURCE_MODEL_ID_KEY] = lineage.model_id
            # Locked: the version is appended to its `mlflow.modelVersions` tag.
            with contextlib.suppress(NotFoundError):
                logged_model = await logged_models.get_logged_model(
                    session, project=project, eid=lineage.model_id, for_update=True
                )
        version = await versions.create_version(
            session,
            model=model,
            candidate=candidate,
            version=semver,
            description=description,
            source=lineage.source,
            metadata=tags,
            logged_model=logged_model,
            actor=call.actor,
        )
        return {"model_version": await _render_version(session, version)}


async def get_model_version(call: Call) -> dict[str, Any]:
    name = call.required("name")
    reference = _version_reference(call)
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        model = await find_registered_model(session, project, name)
        version = await find_version(session, model, reference)
        return {"model_version": await _render_version(session, version)}


async def update_model_version(call: Call) -> dict[str, Any]:
    name = call.required("name")
    reference = _version_reference(call)
    description = _description(call)
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_registered_model(session, project, name)
        version = await find_version(session, model, reference)
        await versions.update_version(
            session, version=version, description=description, actor=call.actor
        )
        return {"model_version": await _render_version(session, version)}


async def transition_stage(call: Call) -> dict[str, Any]:
    name = call.required("name")
    reference = _version_reference(call)
    stage_name = call.required("stage")
    stage = _stage(stage_name)
    archive = call.boolean("archive_existing_versions")
    if archive and stage not in ACTIVE_STAGES:
        raise InvalidValueError(
            "Model version transition cannot archive existing model versions because "
            f"'{stage_name}' is not an Active stage. Valid stages are "
            f"{', '.join(s.value for s in ACTIVE_STAGES)}",
            field="archive_existing_versions",
        )
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_registered_model(session, project, name)
        version = await find_version(session, model, reference)
        await versions.update_version(
            session,
            version=version,
            stage=stage,
            archive_existing_versions=archive,
            actor=call.actor,
        )
        return {"model_version": await _render_version(session, version)}


async def delete_model_version(call: Call) -> dict[str, Any]:
    name = call.required("name")
    reference = _version_reference(call)
    async with call.database.session() as session:
        # Finding it needs only reading; the service decides who may delete it.
        project = await call.project(session, Operation.READ)
        model = await find_registered_model(session, project, name)
        version = await find_version(session, model, reference)
        # A hard delete, as MLflow's: gone at once, its package cleared by the job.
        await versions.destroy_version(session, version=version, actor=call.actor)
    return {}


async def search_model_versions(call: Call) -> dict[str, Any]:
    page = call.page(
        default=paging.SEARCH_MODEL_VERSION_MAX_RESULTS_DEFAULT,
        threshold=paging.SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD,
    )
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        shown, token = await versions.search_versions(
            session,
            project=project,
            filter_string=call.string("filter"),
            order_by=call.strings("order_by"),
            page=page,
        )
        body: dict[str, Any] = {"model_versions": await render_versions(session, list(shown))}
    if token:
        body["next_page_token"] = token
    return body


async def get_download_uri(call: Call) -> dict[str, Any]:
    name = call.required("name")
    reference = _version_reference(call)
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        model = await find_registered_model(session, project, name)
        version = await find_version(session, model, reference)
        return {"artifact_uri": await download_uri(session, project, version)}


async def set_model_version_tag(call: Call) -> dict[str, Any]:
    name = call.required("name")
    reference = _version_reference(call)
    key = call.required("key")
    value = call.string("value", default="") or ""
    _check_version_tag_key(key)
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_registered_model(session, project, name)
        version = await find_version(session, model, reference)
        await versions.set_version_metadata(
            session, version=version, items={key: value}, actor=call.actor
        )
    return {}


async def delete_model_version_tag(call: Call) -> dict[str, Any]:
    name = call.required("name")
    reference = _version_reference(call)
    key = validation.key(call.required("key"), kind="key")
    _check_version_tag_key(key)
    async with call.database.session() as session:
        project = await call.project(session, Operation.READ)
        model = await find_registered_model(session, project, name)
        version = await find_version(session, model, reference)
        # MLflow: deleting a tag that is not there changes nothing.
        with contextlib.suppress(NotFoundError):
            await versions.delete_version_metadata(
                session, version=version, name=key, actor=call.actor
            )
    return {}


ENDPOINTS: list[Endpoint] = [
    ("POST", "/mlflow/registered-models/create", create_registered_model),
    ("POST", "/mlflow/registered-models/rename", rename_registered_model),
    ("PATCH", "/mlflow/registered-models/update", update_registered_model),
    ("DELETE", "/mlflow/registered-models/delete", delete_registered_model),
    ("GET", "/mlflow/registered-models/get", get_registered_model),
    ("GET", "/mlflow/registered-models/search", search_registered_models),
    ("POST", "/mlflow/registered-models/get-latest-versions", get_latest_versions),
    ("GET", "/mlflow/registered-models/get-latest-versions", get_latest_versions),
    ("POST", "/mlflow/registered-models/set-tag", set_registered_model_tag),
    ("DELETE", "/mlflow/registered-models/delete-tag", delete_registered_model_tag),
    ("POST", "/mlflow/registered-models/alias", set_alias),
    ("DELETE", "/mlflow/registered-models/alias", delete_alias),
    ("GET", "/mlflow/registered-models/alias", get_version_by_alias),
    ("POST", "/mlflow/model-versions/create", create_model_version),
    ("PATCH", "/mlflow/model-versions/update", update_model_version),
    ("POST", "/mlflow/model-versions/transition-stage", transition_stage),
    ("DELETE", "/mlflow/model-versions/delete", delete_model_version),
    ("GET", "/mlflow/model-versions/get", get_model_version),
    ("GET", "/mlflow/model-versions/search", search_model_versions),
    ("GET", "/mlflow/model-versions/get-download-uri", get_download_uri),
    ("POST", "/mlflow/model-versions/set-tag", set_model_version_tag),
    ("DELETE", "/mlflow/model-versions/delete-tag", delete_model_version_tag),
]
