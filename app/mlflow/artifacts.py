"""MLflow's artifact proxy (mlflow-artifacts) and run artifact listing.

The artifact URIs this server hands out resolve, under
``<tracking URI>/api/2.0/mlflow-artifacts/artifacts/``, to files of packages:

===============================================  =========================================
proxy path                                       package
===============================================  =========================================
``<experiment id>/<run id>/artifacts/<path>``    the run's candidate package (``ml_model``,
                                                 the model's name, ``candidate_<iid>``)
``<experiment id>/models/<model id>/artifacts/   the logged model's package (``ml_model``,
<path>``                                         the model's name, the ``m-...`` model id)
===============================================  =========================================

Anything else is RESOURCE_DOES_NOT_EXIST; a path that could escape its directory (``..``,
``.``, empty segments, an absolute path, a backslash, NUL or another control character) is
INVALID_PARAMETER_VALUE. Uploads stream into the artifact store and are recorded once
stored, within ``MODELREG_MAX_UPLOAD_SIZE`` (413 past it, nothing stored) and answering
TEMPORARILY_UNAVAILABLE (503) when the store itself fails (`app.http_bodies.store_upload`);
downloads stream back, honouring a single byte ``Range`` (`app.http_files`).

Multipart uploads (``mpu/create|complete|abort``) are MLflow's way of letting clients send
parts straight to cloud storage with presigned URLs; this server does not hand out such
URLs, so it answers them as MLflow does for stores without them, and the client falls
back to one streaming PUT per file.
"""

from __future__ import annotations

import posixpath
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from app.errors import DomainError, InvalidValueError, NotFoundError
from app.http_auth import actor_from_request
from app.http_bodies import store_upload, upload_size
from app.http_files import file_download
from app.mlflow import protocol
from app.mlflow.call import Call, Endpoint, MissingParameterError
from app.mlflow.experiments import find_experiment
from app.mlflow.runs import find_run
from app.models import Candidate, LifecycleState, LoggedModel, Model, Package
from app.runtime import get_runtime
from app.services import logged_models, packages
from app.services.policy import Operation
from app.storage import validate_key

ARTIFACTS_PATH = "/2.0/mlflow-artifacts/artifacts"
MULTIPART_PATH = "/2.0/mlflow-artifacts/mpu"
ARTIFACTS_DIRECTORY = "artifacts"
LOGGED_MODELS_DIRECTORY = protocol.LOGGED_MODELS_DIRECTORY

# The message MLflow's client recognizes as "fall back to a single upload".
MULTIPART_UNSUPPORTED = "Multipart upload is not supported for the current artifact repository"

# --- Paths ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """A proxy path, parsed: whose artifacts, and the path inside their directory.

    `path` is "" for the artifacts directory itself and None for the level above it
    (``<experiment id>/<run id>``), which holds only that directory.
    """

    experiment_id: str
    run_id: str | None
    model_id: str | None
    path: str | None


def checked_path(raw: str, *, field: str = "path", directory: bool = False) -> str:
    """`raw` if it is a relative path that stays inside its root, else INVALID_PARAMETER_VALUE.
    A directory may end with one slash, which is dropped; "" is the root."""
    if directory and raw.endswith("/"):
        raw = raw[:-1]
    if directory and raw == "":
        return raw
    return validate_key(raw, field=field)


def parse_location(raw: str, *, directory: bool = False) -> Location:
    path = checked_path(raw, directory=directory)
    segments = path.split("/") if path else []
    is_model = len(segments) >= 2 and segments[1] == LOGGED_MODELS_DIRECTORY
    owner_length = 3 if is_model else 2
    if len(segments) < owner_length:
        raise InvalidValueError(
            f"'{raw}' is no artifact location: artifacts live under "
            "<experiment id>/<run id>/artifacts or <experiment id>/models/<model id>/artifacts",
            field="path",
        )
    experiment_id, owner, rest = segments[0], segments[owner_length - 1], segments[owner_length:]
    inner: str | None = None
    if rest:
        if rest[0] != ARTIFACTS_DIRECTORY:
            raise NotFoundError(f"No artifact location '{raw}'", field="path")
        inner = "/".join(rest[1:])
    return Location(
        experiment_id=experiment_id,
        run_id=None if is_model else owner,
        model_id=owner if is_model else None,
        path=inner,
    )


def file_location(raw: str) -> tuple[Location, str]:
    """A location naming one file."""
    location = parse_location(raw)
    if not location.path:
        raise InvalidValueError(f"'{raw}' names a directory, not a file", field="path")
    return location, location.path


# --- Owners --------------------------------------------------------------------------------

Owner = Candidate | LoggedModel


async def find_owner(
    session: AsyncSession, call: Call, location: Location, operation: Operation
) -> Owner:
    """The run or logged model whose artifacts `location` addresses, if the caller may do
    `operation` in the project; writes need it active."""
    project = await call.project(session, operation)
    model = await find_experiment(session, project, location.experiment_id)
    owner: Owner
    if location.run_id is not None:
        owner = await find_run(session, project, location.run_id)
    else:
        assert location.model_id is not None
        owner = await logged_models.get_logged_model(
            session, project=project, eid=location.model_id, include_deleted=True
        )
    if owner.model_id != model.id:
        kind = "Run" if location.run_id is not None else "Logged model"
        raise NotFoundError(
            f"{kind} '{location.run_id or location.model_id}' is not in experiment "
            f"{location.experiment_id}",
            field="path",
        )
    if operation is not Operation.READ:
        require_active(owner)
    return owner


def require_active(owner: Owner) -> None:
    if owner.state is not LifecycleState.ACTIVE:
        kind = "run" if isinstance(owner, Candidate) else "logged model"
        raise InvalidValueError(
            f"The {kind} '{owner.eid}' is {owner.state.value}; its artifacts cannot change",
            field="path",
        )


async def existing_package(session: AsyncSession, owner: Owner) -> Package | None:
    """The owner's package, if it has one yet (reads never create one)."""
    if owner.package_id is None:
        return None
    return await session.get(Package, owner.package_id)


async def reload(session: AsyncSession, owner: Owner) -> Owner:
    """The owner as another session sees it now."""
    if isinstance(owner, Candidate):
        return await session.get_one(Candidate, owner.id)
    return await session.get_one(LoggedModel, owner.id)


def package_resolver(owner: Owner) -> Callable[[AsyncSession], Awaitable[Package]]:
    """Finds (or creates) the owner's package in the transaction that records a file."""

    async def package_of(session: AsyncSession) -> Package:
        current = await reload(session, owner)
        require_active(current)
        if isinstance(current, Candidate):
            return await packages.candidate_package(session, candidate=current)
        return await packages.logged_model_package(session, logged_model=current)

    return package_of


def existing_package_resolver(
    owner: Owner,
) -> Callable[[AsyncSession], Awaitable[Package | None]]:

    async def package_of(session: AsyncSession) -> Package | None:
        current = await reload(session, owner)
        require_active(current)
        return await existing_package(session, current)

    return package_of


async def directory_listing(
    session: AsyncSession, owner: Owner, path: str, *, full_paths: bool
) -> list[dict[str, Any]]:
    """MLflow FileInfos of what lies directly under `path` of the owner's artifacts: by
    name (the proxy's listing) or by path from the artifacts root (run listings)."""
    package = await existing_package(session, owner)
    if package is None:
        return []
    files = []
    for entry in await packages.list_directory(session, package=package, path=path):
        info: dict[str, Any] = {
            "path": posixpath.join(path, entry.name) if full_paths else entry.name,
            "is_dir": entry.is_dir,
        }
        if entry.size is not None:
            info["file_size"] = entry.size
        files.append(info)
    return files


# --- The proxy -----------------------------------------------------------------------------


async def _call(request: Request) -> Call:
    database = get_runtime(request).database
    actor = await actor_from_request(request, database)
    return Call(request=request, database=database, actor=actor, params=dict(request.query_params))


async def upload(request: Request) -> Response:
    """PUT: the request body, streamed into the store, becomes the file at the path."""
    location, path = file_location(request.path_params["path"])
    upload_size(request)
    call = await _call(request)
    async with call.database.session(read_only=True) as session:
        owner = await find_owner(session, call, location, Operation.UPLOAD)
    try:
        await store_upload(
            request, project_id=owner.project_id, package_of=package_resolver(owner), path=path
        )
    except ClientDisconnect:
        # Nothing was stored; nobody is left to read an answer.
        return Response(status_code=400)
    return JSONResponse({})


async def download(request: Request) -> Response:
    """GET: the file's bytes, streamed, whole or a single byte range."""
    location, path = file_location(request.path_params["path"])
    call = await _call(request)
    async with call.database.session(read_only=True) as session:
        owner = await find_owner(session, call, location, Operation.READ)
        package = await existing_package(session, owner)
        if package is None:
            raise NotFoundError(f"No artifact '{path}'", field="path")
        file = await packages.get_file(session, package=package, path=path)
    return await file_download(request, file, missing=f"No artifact '{path}'")


async def delete(request: Request) -> Response:
    """DELETE: the file at the path, or everything under it."""
    location = parse_location(request.path_params["path"], directory=True)
    if location.path is None:
        raise InvalidValueError(
            "Only files and directories inside an artifacts directory can be deleted",
            field="path",
        )
    call = await _call(request)
    async with call.database.session(read_only=True) as session:
        owner = await find_owner(session, call, location, Operation.UPLOAD)
    await packages.remove_files(
        call.database,
        get_runtime(request).artifacts,
        package_of=existing_package_resolver(owner),
        path=location.path,
    )
    return JSONResponse({})


async def list_directory(request: Request) -> Response:
    """GET ?path=<directory>: what lies directly under it, by name."""
    raw = request.query_params.get("path", "")
    if not raw:
        raise InvalidValueError(
            "List a run's or a logged model's artifacts: path=<experiment id>/<run id>/artifacts",
            field="path",
        )
    location = parse_location(raw, directory=True)
    call = await _call(request)
    async with call.database.session(read_only=True) as session:
        owner = await find_owner(session, call, location, Operation.READ)
        if location.path is None:
            files: list[dict[str, Any]] = [{"path": ARTIFACTS_DIRECTORY, "is_dir": True}]
        else:
            files = await directory_listing(session, owner, location.path, full_paths=False)
    return JSONResponse({"files": files})


async def multipart(request: Request) -> Response:
    """mpu/create|complete|abort: not offered; the client falls back to a single PUT.
    The path is the directory the file goes to (its name travels in the body)."""
    parse_location(request.path_params["path"], directory=True)
    call = await _call(request)
    async with call.database.session(read_only=True) as session:
        await call.project(session, Operation.UPLOAD)
    return JSONResponse({"error_code": "NOT_IMPLEMENTED", "message": MULTIPART_UNSUPPORTED}, 501)


def proxy_routes(on_error: Callable[[DomainError], Response]) -> list[BaseRoute]:
    """The proxy's routes (streamed bodies, a path parameter: no JSON endpoints), answering
    domain errors with `on_error`."""

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
        async def respond(request: Request) -> Response:
            try:
                return await handler(request)
            except DomainError as error:
                return on_error(error)

        return respond

    routes: list[BaseRoute] = []
    for prefix in ("/api", "/ajax-api"):
        routes += [
            Route(f"{prefix}{ARTIFACTS_PATH}", guarded(list_directory), methods=["GET"]),
            Route(f"{prefix}{ARTIFACTS_PATH}/{{path:path}}", guarded(download), methods=["GET"]),
            Route(f"{prefix}{ARTIFACTS_PATH}/{{path:path}}", guarded(upload), methods=["PUT"]),
            Route(f"{prefix}{ARTIFACTS_PATH}/{{path:path}}", guarded(delete), methods=["DELETE"]),
            Route(
                f"{prefix}{MULTIPART_PATH}/{{action:str}}/{{path:path}}",
                guarded(multipart),
                methods=["POST"],
            ),
        ]
    return routes


# --- Run artifact listing (JSON) -----------------------------------------------------------


async def list_run_artifacts(call: Call) -> dict[str, Any]:
    """GET mlflow/artifacts/list: what lies directly under `path` of a run's artifacts."""
    run_id = call.string("run_id") or call.string("run_uuid")
    if run_id is None:
        raise MissingParameterError("run_id")
    path = checked_path(call.string("path") or "", directory=True)
    async with call.database.session(read_only=True) as session:
        project = await call.project(session, Operation.READ)
        candidate = await find_run(session, project, run_id)
        model = await session.get_one(Model, candidate.model_id)
        files = await directory_listing(session, candidate, path, full_paths=True)
    return {"root_uri": protocol.run_artifact_uri(model.iid, candidate), "files": files}


ENDPOINTS: list[Endpoint] = [
    ("GET", "/mlflow/artifacts/list", list_run_artifacts),
]
