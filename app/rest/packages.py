"""The package API: files of a project's packages, streamed in both directions.

Under ``/api/v1/projects/<project>/packages``:

===========================================================  ==============================
route                                                        what
===========================================================  ==============================
``GET ml_models/<version ref>/files``                        list the files (JSON)
``GET|PUT ml_models/<version ref>/files/<path>``             download / upload one file
``GET|PUT generic/<name>/<version>/<path>``                  a generic package's file
===========================================================  ==============================

A ``<version ref>`` is a model version's id (its package: ``ml_model``, the model's name,
the semver) or ``candidate:<iid>`` (the candidate's package, ``candidate_<iid>``). A
generic package is created by its first upload. Names and versions of generic packages
are 1-255 letters, digits, ``.``, ``_`` or ``-``, starting with a letter or digit.

Authentication is a personal access token (``Authorization: Bearer``, or the password of
HTTP Basic). Reads need the project's read access, uploads developer access.

Uploads: ``PUT`` with the raw bytes as body. ``X-Checksum-SHA256: <64 hex digits>``, if
sent, is the sha256 the client expects. A body over the server's ``max_upload_size``
answers 413 (from ``Content-Length`` before anything is read, or once the streamed body
grows past it; nothing is stored), one that stalls 408 (`app.http_bodies`). A stored
upload answers 201 with the file's path, size and sha256 as measured, and the package's
status: ``processing`` until a background job has verified the stored bytes (and read an
``MLmodel`` file's flavors and signature into the owner's metadata), then ``default``, or
``error`` when a check failed.

Downloads stream the file with ``Content-Length``, an ``ETag`` of its sha256 and a single
byte ``Range`` (206; 416 outside the file). ``X-Package-Status`` tells whether the package
is verified (``default``) or still ``processing``. A package in ``error`` (or one still
``processing`` that holds a file whose verification failed) is not served: downloads
answer 409 ``package_error`` with the reason. Uploading the failed file again, correctly,
repairs the package.

Errors are JSON ``{"message": ..., "error": <code>}``: 400 ``invalid_value`` (a bad path,
name, reference or checksum), 401 ``unauthenticated`` (no or bad credentials where they are
needed), 403 ``forbidden`` (a role or token scope too weak), 404 ``not_found`` (no such
project, owner or file; also a project the caller may not read), 408 ``request_timeout``,
409 ``package_error``, 413 ``payload_too_large``, 416 ``range_not_satisfiable``, and 503
``storage_unavailable`` when the artifact store fails to take an upload.

Download URLs (`app.external_urls.file_url`) start with the configured external URL, never
the ``Host`` the client sent.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from app.db import Database
from app.errors import InvalidValueError, NotFoundError
from app.external_urls import PACKAGES_PATH
from app.http_auth import actor_from_request
from app.http_bodies import RequestRefusedError, store_upload, upload_size
from app.http_files import file_download
from app.models import (
    Package,
    PackageStatus,
    PackageType,
    Project,
)
from app.rest import RestError, guarded
from app.runtime import get_runtime
from app.services import jobs, packages, projects
from app.services.packages import PackageOwner
from app.services.policy import Operation
from app.storage import StoredObject, validate_key

BASE = PACKAGES_PATH
CHECKSUM_HEADER = "x-checksum-sha256"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")

# --- Resolving what a request addresses ----------------------------------------------------


async def _project(request: Request, session: AsyncSession, operation: Operation) -> Project:
    runtime = get_runtime(request)
    actor = await actor_from_request(request, runtime.database)
    return await projects.find_project(
        session, actor=actor, path=request.path_params["project"], operation=operation
    )


def _name(value: str, field: str) -> str:
    if not _NAME.fullmatch(value):
        raise InvalidValueError(
            f"{field} '{value}' must be 1-255 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            field=field,
        )
    return value


def _path(request: Request) -> str:
    return validate_key(request.path_params["path"], field="path")


def _owner_resolver(owner: PackageOwner) -> Callable[[AsyncSession], Awaitable[Package]]:
    """Finds (or creates) the owner's package in the transaction that records a file."""

    async def package_of(session: AsyncSession) -> Package:
        return await packages.package_for_upload(session, owner=owner)

    return package_of


def _generic_resolver(
    project: Project, name: str, version: str
) -> Callable[[AsyncSession], Awaitable[Package]]:
    async def package_of(session: AsyncSession) -> Package:
        return await packages.get_or_create_package(
            session,
            project_id=project.id,
            package_type=PackageType.GENERIC,
            name=name,
            version=version,
        )

    return package_of


# --- Uploads -------------------------------------------------------------------------------


def _expected_checksum(request: Request) -> str | None:
    value = request.headers.get(CHECKSUM_HEADER)
    if value is None:
        return None
    value = value.strip()
    if not _SHA256.fullmatch(value):
        raise InvalidValueError(
            "X-Checksum-SHA256 must be the sha256 of the body as 64 hex digits",
            field="X-Checksum-SHA256",
        )
    return value.lower()


def _verification_hook(
    path: str, expected: str | None
) -> Callable[[AsyncSession, Package, StoredObject], Awaitable[None]]:
    """Marks the package `processing` and enqueues the upload's verification, in the
    transaction that records the file."""

    async def recorded(session: AsyncSession, package: Package, stored: StoredObject) -> None:
        if package.status is PackageStatus.PENDING_DESTRUCTION:
            raise NotFoundError(
                f"Package {package.name} {package.version} is being deleted", field="path"
            )
        package.status = PackageStatus.PROCESSING
        await jobs.enqueue(
            session,
            kind=jobs.FINALIZE_UPLOAD,
            project_id=package.project_id,
            payload={
                "package_id": package.id,
                "path": path,
                "storage_key": stored.key,
                "size": stored.size,
                "sha256": stored.sha256,
                "expected_sha256": expected,
            },
        )
        await session.flush()

    return recorded


async def _store(
    request: Request,
    project: Project,
    path: str,
    package_of: Callable[[AsyncSession], Awaitable[Package]],
) -> Response:
    expected = _expected_checksum(request)
    try:
        stored = await store_upload(
            request,
            project_id=project.id,
            package_of=package_of,
            path=path,
            on_recorded=_verification_hook(path, expected),
        )
    except ClientDisconnect:
        # Nothing was stored; nobody is left to read an answer.
        return Response(status_code=400)
    status = await _status_after_upload(get_runtime(request).database, package_of)
    return JSONResponse(
        {
            "path": path,
            "size": stored.size,
            "sha256": stored.sha256,
            "package_status": status,
        },
        status_code=201,
    )


async def _status_after_upload(
    database: Database, package_of: Callable[[AsyncSession], Awaitable[Package]]
) -> str:
    async with database.session(read_only=True) as session:
        package = await package_of(session)
        return package.status.value


def _refusals_in_rest_terms(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """The upload handler, answering refused bodies (413, 408, 503) with their status."""

    async def respond(request: Request) -> Response:
        try:
            return await handler(request)
        except RequestRefusedError as error:
            raise RestError(error.message, status=error.status, code=error.code) from None

    return respond


async def upload_ml_model_file(request: Request) -> Response:
    path = _path(request)
    upload_size(request)
    async with get_runtime(request).database.session(read_only=True) as session:
        project = await _project(request, session, Operation.UPLOAD)
        owner = await packages.find_ref_owner(
            session, project=project, ref=request.path_params["ref"]
        )
    return await _store(request, project, path, _owner_resolver(owner))


async def upload_generic_file(request: Request) -> Response:
    name = _name(request.path_params["name"], "name")
    version = _name(request.path_params["version"], "version")
    path = _path(request)
    upload_size(request)
    async with get_runtime(request).database.session(read_only=True) as session:
        project = await _project(request, session, Operation.UPLOAD)
    return await _store(request, project, path, _generic_resolver(project, name, version))


# --- Downloads and listings ----------------------------------------------------------------


async def _serve(request: Request, package: Package | None, path: str) -> Response:
    runtime = get_runtime(request)
    if package is None or package.status is PackageStatus.PENDING_DESTRUCTION:
        raise NotFoundError(f"No file '{path}'", field="path")
    async with runtime.database.session(read_only=True) as session:
        # A package whose uploads await verification may still hold a file that failed.
        problems: dict[str, str] = {}
        if package.status is not PackageStatus.DEFAULT:
            problems = await packages.upload_problems(session, package=package)
        if problems or package.status is PackageStatus.ERROR:
            reason = "; ".join(problems.values()) or "an upload failed verification"
            raise RestError(
                f"Package {package.name} {package.version} failed verification: {reason}",
                status=409,
                code="package_error",
            )
        file = await packages.get_file(session, package=package, path=path)
    return await file_download(
        request,
        file,
        missing=f"No file '{path}'",
        headers={"X-Package-Status": package.status.value},
    )


async def download_ml_model_file(request: Request) -> Response:
    path = _path(request)
    async with get_runtime(request).database.session(read_only=True) as session:
        project = await _project(request, session, Operation.READ)
        owner = await packages.find_ref_owner(
            session, project=project, ref=request.path_params["ref"]
        )
        package = await packages.owner_package(session, owner=owner)
    return await _serve(request, package, path)


async def download_generic_file(request: Request) -> Response:
    name = _name(request.path_params["name"], "name")
    version = _name(request.path_params["version"], "version")
    path = _path(request)
    async with get_runtime(request).database.session(read_only=True) as session:
        project = await _project(request, session, Operation.READ)
        package = await packages.find_generic_package(
            session, project=project, name=name, version=version
        )
    return await _serve(request, package, path)


async def list_ml_model_files(request: Request) -> Response:
    """The package's files with their size and sha256, by path."""
    async with get_runtime(request).database.session(read_only=True) as session:
        project = await _project(request, session, Operation.READ)
        owner = await packages.find_ref_owner(
            session, project=project, ref=request.path_params["ref"]
        )
        package = await packages.owner_package(session, owner=owner)
        body: dict[str, Any] = {"package": None, "files": []}
        if package is not None and package.status is not PackageStatus.PENDING_DESTRUCTION:
            body["package"] = {
                "type": package.package_type.value,
                "name": package.name,
                "version": package.version,
                "status": package.status.value,
            }
            body["files"] = [
                {"path": file.path, "size": file.size, "sha256": file.sha256}
                for file in await packages.list_files(session, package=package)
            ]
    return JSONResponse(body)


def routes() -> list[BaseRoute]:
    ml_model = f"{BASE}/ml_models/{{ref}}/files"
    generic = f"{BASE}/generic/{{name}}/{{version}}/{{path:path}}"
    return [
        Route(ml_model, guarded(list_ml_model_files), methods=["GET"]),
        Route(f"{ml_model}/{{path:path}}", guarded(download_ml_model_file), methods=["GET"]),
        Route(
            f"{ml_model}/{{path:path}}",
            guarded(_refusals_in_rest_terms(upload_ml_model_file)),
            methods=["PUT"],
        ),
        Route(generic, guarded(download_generic_file), methods=["GET"]),
        Route(generic, guarded(_refusals_in_rest_terms(upload_generic_file)), methods=["PUT"]),
    ]
