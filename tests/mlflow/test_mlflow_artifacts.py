"""Unchanged MLflow artifact code against a live modelreg: files go through the artifact
proxy into the run's candidate package and come back byte for byte."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import urllib.parse
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import mlflow
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database
from app.models import Candidate, Model, Package, PackageFile, PackageType, User
from app.services import auth, candidates, models, packages, projects, users
from app.storage import LocalArtifactStore
from tests.live_server import LiveServer

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"

T = TypeVar("T")


def _headers(server: LiveServer, token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token or server.admin_token}"}


def _proxy_path(run: mlflow.entities.Run, path: str) -> str:
    """The proxy path of a file of the run (its artifact URI is mlflow-artifacts:/...)."""
    root = run.info.artifact_uri.removeprefix("mlflow-artifacts:/")
    return f"{ARTIFACTS}/{root}/{path}"


def _raw_request(
    server: LiveServer, method: str, target: str, body: bytes = b""
) -> tuple[int, dict[str, Any]]:
    """A request whose target is sent exactly as written (httpx would normalize `..`)."""
    address = urllib.parse.urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    try:
        connection.request(method, target, body=body, headers=_headers(server))
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    return response.status, json.loads(payload) if payload else {}


def _in_database(
    server: LiveServer, work: Callable[[AsyncSession], Awaitable[T]], *, write: bool = False
) -> T:
    """Run `work` in a session of the server's database, from a synchronous test."""

    async def run() -> T:
        database = Database(server.database_url)
        try:
            async with database.session(read_only=not write) as session:
                return await work(session)
        finally:
            await database.dispose()

    return asyncio.run(run())


def _candidate_files(server: LiveServer, run_id: str) -> tuple[Package, list[PackageFile]]:
    async def work(session: AsyncSession) -> tuple[Package, list[PackageFile]]:
        project = await projects.get_default_project(session)
        candidate = await candidates.get_candidate(session, project=project, eid=run_id)
        package = await packages.candidate_package(session, candidate=candidate)
        return package, await packages.list_files(session, package=package)

    return _in_database(server, work)


def _stored(server: LiveServer, key: str) -> bytes | None:
    """The bytes of an object of the server's (local) artifact store, None if absent."""

    async def read() -> bytes | None:
        store = LocalArtifactStore(server.log_path.parent / "data" / "artifacts")
        if not await store.exists(key):
            return None
        return await (await store.open(key)).read_all()

    return asyncio.run(read())


def _tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_a_logged_file_is_listed_and_downloaded_byte_for_byte(
    client: MlflowClient, tmp_path: Path
) -> None:
    mlflow.set_experiment("Artifacts single")
    content = bytes(range(256)) * 10 + "é\n".encode()
    source = tmp_path / "weights.bin"
    source.write_bytes(content)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(source))
        mlflow.log_artifact(str(source), artifact_path="nested/dir")
    run_id = run.info.run_id

    listed = client.list_artifacts(run_id)
    assert [(f.path, f.is_dir, f.file_size) for f in listed] == [
        ("nested", True, None),
        ("weights.bin", False, len(content)),
    ]
    assert [f.path for f in client.list_artifacts(run_id, "nested")] == ["nested/dir"]
    assert [(f.path, f.file_size) for f in client.list_artifacts(run_id, "nested/dir")] == [
        ("nested/dir/weights.bin", len(content))
    ]
    # A file is no directory, and a missing directory is empty (MLflow's answers).
    assert client.list_artifacts(run_id, "weights.bin") == []
    assert client.list_artifacts(run_id, "missing") == []

    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="weights.bin", dst_path=str(tmp_path / "out")
    )
    assert Path(downloaded).read_bytes() == content


def test_a_directory_tree_round_trips(client: MlflowClient, tmp_path: Path) -> None:
    mlflow.set_experiment("Artifacts tree")
    tree = tmp_path / "tree"
    files = {
        "README.md": b"# readme\n",
        "data/train.csv": b"a,b\n1,2\n",
        "data/raw/blob.bin": os.urandom(4096),
        "data/raw/empty.txt": b"",
        "conf/deep/er/settings.json": b'{"x": 1}',
    }
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(tree), artifact_path="bundle")
    run_id = run.info.run_id

    assert [(f.path, f.is_dir) for f in client.list_artifacts(run_id)] == [("bundle", True)]
    assert [(f.path, f.is_dir) for f in client.list_artifacts(run_id, "bundle")] == [
        ("bundle/README.md", False),
        ("bundle/conf", True),
        ("bundle/data", True),
    ]
    assert [(f.path, f.file_size) for f in client.list_artifacts(run_id, "bundle/data/raw")] == [
        ("bundle/data/raw/blob.bin", 4096),
        ("bundle/data/raw/empty.txt", 0),
    ]
    out = client.download_artifacts(run_id, "bundle", str(tmp_path / "out"))
    assert _tree(Path(out)) == files


def test_files_are_recorded_in_the_candidates_package(
    client: MlflowClient, server: LiveServer, tmp_path: Path
) -> None:
    experiment_id = mlflow.set_experiment("Artifacts recorded").experiment_id
    (tmp_path / "a.txt").write_bytes(b"alpha")
    (tmp_path / "b.txt").write_bytes(b"beta")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "a.txt"))
        mlflow.log_artifact(str(tmp_path / "b.txt"), artifact_path="sub")
    package, files = _candidate_files(server, run.info.run_id)

    async def owners(session: AsyncSession) -> tuple[Model, Candidate]:
        project = await projects.get_default_project(session)
        model = await models.get_model(session, project=project, iid=int(experiment_id))
        candidate = await candidates.get_candidate(session, project=project, eid=run.info.run_id)
        return model, candidate

    model, candidate = _in_database(server, owners)
    assert package.package_type is PackageType.ML_MODEL
    assert (package.name, package.version) == (model.name, f"candidate_{candidate.iid}")
    assert [(f.path, f.size, f.sha256) for f in files] == [
        ("a.txt", 5, hashlib.sha256(b"alpha").hexdigest()),
        ("sub/b.txt", 4, hashlib.sha256(b"beta").hexdigest()),
    ]
    assert [_stored(server, file.storage_key) for file in files] == [b"alpha", b"beta"]


def test_overwriting_a_file_replaces_its_bytes_and_drops_the_old_object(
    client: MlflowClient, server: LiveServer, tmp_path: Path
) -> None:
    mlflow.set_experiment("Artifacts overwrite")
    source = tmp_path / "model.txt"
    with mlflow.start_run() as run:
        source.write_bytes(b"first version, longer")
        mlflow.log_artifact(str(source))
        _, [first] = _candidate_files(server, run.info.run_id)
        source.write_bytes(b"second")
        mlflow.log_artifact(str(source))
    _, [second] = _candidate_files(server, run.info.run_id)

    assert (second.path, second.size) == ("model.txt", 6)
    assert second.storage_key != first.storage_key
    assert _stored(server, first.storage_key) is None
    assert _stored(server, second.storage_key) == b"second"
    downloaded = client.download_artifacts(run.info.run_id, "model.txt", str(tmp_path / "out"))
    assert Path(downloaded).read_bytes() == b"second"


def test_a_20_megabyte_file_round_trips(
    client: MlflowClient, server: LiveServer, tmp_path: Path
) -> None:
    mlflow.set_experiment("Artifacts large")
    content = os.urandom(20 * 1024 * 1024)
    source = tmp_path / "large.bin"
    source.write_bytes(content)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(source))
    downloaded = client.download_artifacts(run.info.run_id, "large.bin", str(tmp_path / "out"))
    assert hashlib.sha256(Path(downloaded).read_bytes()).digest() == (
        hashlib.sha256(content).digest()
    )
    _, [file] = _candidate_files(server, run.info.run_id)
    assert (file.size, file.sha256) == (len(content), hashlib.sha256(content).hexdigest())


def test_a_client_forced_into_multipart_uploads_falls_back_to_a_single_put(
    client: MlflowClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", "1")
    mlflow.set_experiment("Artifacts multipart")
    source = tmp_path / "parts.bin"
    source.write_bytes(b"x" * 1000)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(source))
    out = client.download_artifacts(run.info.run_id, "parts.bin", str(tmp_path / "out"))
    assert Path(out).read_bytes() == b"x" * 1000


def test_deleting_an_artifact_removes_its_record_and_bytes(
    client: MlflowClient, server: LiveServer, tmp_path: Path
) -> None:
    mlflow.set_experiment("Artifacts delete")
    (tmp_path / "keep.txt").write_bytes(b"keep")
    (tmp_path / "drop.txt").write_bytes(b"drop")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "keep.txt"))
        mlflow.log_artifact(str(tmp_path / "drop.txt"), artifact_path="dir")
    _, before = _candidate_files(server, run.info.run_id)
    dropped = next(f for f in before if f.path == "dir/drop.txt")

    repository = get_artifact_repository(run.info.artifact_uri)
    repository.delete_artifacts("dir")  # type: ignore[no-untyped-call]

    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["keep.txt"]
    _, after = _candidate_files(server, run.info.run_id)
    assert [f.path for f in after] == ["keep.txt"]
    assert _stored(server, dropped.storage_key) is None
    with pytest.raises(MlflowException):
        client.download_artifacts(run.info.run_id, "dir/drop.txt", str(tmp_path / "out"))
    # Deleting what is not there is RESOURCE_DOES_NOT_EXIST.
    response = httpx.delete(server.url + _proxy_path(run, "dir/drop.txt"), headers=_headers(server))
    assert (response.status_code, response.json()["error_code"]) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    # Deleting the artifact root (what `delete_artifacts()` sends) empties the package.
    [kept] = after
    repository.delete_artifacts()  # type: ignore[no-untyped-call]
    assert client.list_artifacts(run.info.run_id) == []
    assert _candidate_files(server, run.info.run_id)[1] == []
    assert _stored(server, kept.storage_key) is None


def test_concurrent_uploads_leave_one_file_per_path_and_no_stray_objects(
    client: MlflowClient, server: LiveServer
) -> None:
    mlflow.set_experiment("Artifacts concurrency")
    with mlflow.start_run() as run:
        pass
    contents = [f"version {number}".encode() * (number + 1) for number in range(8)]

    def put(path: str, content: bytes) -> int:
        response = httpx.put(
            server.url + _proxy_path(run, path), content=content, headers=_headers(server)
        )
        return response.status_code

    # The first uploads of a fresh run race to create its package; others to one path.
    with ThreadPoolExecutor(max_workers=8) as pool:
        same = list(pool.map(lambda c: put("same.bin", c), contents))
        distinct = list(pool.map(lambda n: put(f"many/{n}.bin", contents[n]), range(8)))
    assert same == [200] * 8
    assert distinct == [200] * 8
    _, files = _candidate_files(server, run.info.run_id)
    assert [f.path for f in files] == [*(f"many/{n}.bin" for n in range(8)), "same.bin"]
    [last] = [f for f in files if f.path == "same.bin"]
    assert _stored(server, last.storage_key) in contents

    # Every object of the project is recorded by a package file: nothing leaked.
    async def project_keys(session: AsyncSession) -> tuple[int, set[str]]:
        project = await projects.get_default_project(session)
        keys = await session.scalars(
            sa.select(PackageFile.storage_key)
            .join(Package, Package.id == PackageFile.package_id)
            .where(Package.project_id == project.id)
        )
        return project.id, set(keys)

    project_id, recorded = _in_database(server, project_keys)

    async def stored_keys() -> set[str]:
        store = LocalArtifactStore(server.log_path.parent / "data" / "artifacts")
        return {info.key async for info in store.list(f"projects/{project_id}/objects/")}

    assert asyncio.run(stored_keys()) == recorded


def test_a_head_request_answers_the_length_without_a_body(
    client: MlflowClient, server: LiveServer, tmp_path: Path
) -> None:
    mlflow.set_experiment("Artifacts head")
    (tmp_path / "h.txt").write_bytes(b"0123456789")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "h.txt"))
    response = httpx.head(server.url + _proxy_path(run, "h.txt"), headers=_headers(server))
    assert (response.status_code, response.headers["content-length"]) == (200, "10")
    assert response.content == b""
    assert response.headers["content-disposition"] == 'attachment; filename="h.txt"'


def test_downloads_stream_with_length_and_honour_a_byte_range(
    client: MlflowClient, server: LiveServer, tmp_path: Path
) -> None:
    mlflow.set_experiment("Artifacts ranges")
    content = bytes(range(200))
    (tmp_path / "r.bin").write_bytes(content)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "r.bin"))
    url = server.url + _proxy_path(run, "r.bin")

    whole = httpx.get(url, headers=_headers(server))
    assert whole.status_code == 200
    assert whole.headers["content-length"] == "200"
    assert whole.headers["etag"] == f'"{hashlib.sha256(content).hexdigest()}"'
    assert whole.content == content

    part = httpx.get(url, headers={**_headers(server), "Range": "bytes=10-19"})
    assert (part.status_code, part.headers["content-range"]) == (206, "bytes 10-19/200")
    assert part.content == content[10:20]
    tail = httpx.get(url, headers={**_headers(server), "Range": "bytes=-5"})
    assert (tail.status_code, tail.content) == (206, content[-5:])
    outside = httpx.get(url, headers={**_headers(server), "Range": "bytes=500-"})
    assert (outside.status_code, outside.headers["content-range"]) == (416, "bytes */200")


def test_the_run_artifact_listing_endpoint_answers_as_mlflow(
    client: MlflowClient, server: LiveServer, tmp_path: Path
) -> None:
    mlflow.set_experiment("Artifacts listing endpoint")
    (tmp_path / "f.txt").write_bytes(b"12345")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "f.txt"), artifact_path="d")
    response = httpx.get(
        f"{server.url}/api/2.0/mlflow/artifacts/list",
        params={"run_id": run.info.run_id, "path": "d"},
        headers=_headers(server),
    )
    assert response.status_code == 200
    assert response.json() == {
        "root_uri": run.info.artifact_uri,
        "files": [{"path": "d/f.txt", "is_dir": False, "file_size": 5}],
    }
    proxy = httpx.get(
        server.url + ARTIFACTS,
        params={"path": run.info.artifact_uri.removeprefix("mlflow-artifacts:/")},
        headers=_headers(server),
    )
    assert proxy.json() == {"files": [{"path": "d", "is_dir": True}]}


@pytest.mark.parametrize(
    "path",
    [
        "../../x",
        "%2e%2e/%2e%2e/x",
        "..%2F..%2Fx",
        "a/%2E%2E/%2E%2E/%2E%2E/x",
        "./x",
        "a//b",
        "..%5C..%5Cx",
        "x%00.txt",
        "%2Fetc%2Fpasswd",
    ],
)
def test_paths_that_could_escape_are_refused(
    client: MlflowClient, server: LiveServer, path: str
) -> None:
    mlflow.set_experiment("Artifacts traversal")
    with mlflow.start_run() as run:
        pass
    status, body = _raw_request(server, "PUT", _proxy_path(run, path), b"evil")
    assert status == 400, body
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert isinstance(body["message"], str)
    status, body = _raw_request(server, "GET", _proxy_path(run, path))
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert client.list_artifacts(run.info.run_id) == []


def test_locations_that_are_no_runs_artifacts_are_refused(
    client: MlflowClient, server: LiveServer
) -> None:
    experiment_id = mlflow.set_experiment("Artifacts elsewhere").experiment_id
    other_id = mlflow.set_experiment("Artifacts other").experiment_id
    with mlflow.start_run() as run:
        pass
    run_id = run.info.run_id
    cases = {
        f"{experiment_id}/{run_id}/artifacts/x": 404,  # the run is in another experiment
        f"{other_id}/{run_id}/outside/x": 404,
        f"{other_id}/{'0' * 32}/artifacts/x": 404,
        f"{other_id}/models/m-{'0' * 32}/artifacts/x": 404,
        f"notanumber/{run_id}/artifacts/x": 400,
        f"{other_id}/{run_id}/artifacts": 400,  # a directory, not a file
        f"{other_id}": 400,
    }
    for path, status in cases.items():
        response = httpx.put(
            f"{server.url}{ARTIFACTS}/{path}", content=b"data", headers=_headers(server)
        )
        assert response.status_code == status, (path, response.text)
        expected = "RESOURCE_DOES_NOT_EXIST" if status == 404 else "INVALID_PARAMETER_VALUE"
        assert response.json()["error_code"] == expected, path


def _token_of_admin_with_scope(server: LiveServer, name: str, scope: str) -> str:
    async def create(session: AsyncSession) -> str:
        user = await users.create_user(session, username=name, is_admin=True)
        _, secret = await auth.create_token(session, user=user, name=name, scopes=[scope])
        return secret

    return _in_database(server, create, write=True)


def test_reads_need_a_token_and_writes_need_the_api_scope(
    client: MlflowClient, server: LiveServer, tmp_path: Path
) -> None:
    mlflow.set_experiment("Artifacts auth")
    (tmp_path / "f.txt").write_bytes(b"secret")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "f.txt"))
    url = server.url + _proxy_path(run, "f.txt")
    listing = server.url + ARTIFACTS

    anonymous = httpx.get(url)
    assert anonymous.status_code == 401
    assert anonymous.json()["error_code"] == "UNAUTHENTICATED"
    assert "WWW-Authenticate" in anonymous.headers
    root = run.info.artifact_uri.removeprefix("mlflow-artifacts:/")
    assert httpx.get(listing, params={"path": root}).status_code == 401
    assert httpx.put(server.url + _proxy_path(run, "g.txt"), content=b"x").status_code == 401

    reader = _token_of_admin_with_scope(server, f"reader-{run.info.run_id[:8]}", "read_api")
    read = httpx.get(url, headers=_headers(server, reader))
    assert (read.status_code, read.content) == (200, b"secret")
    listed = httpx.get(listing, params={"path": root}, headers=_headers(server, reader))
    assert listed.status_code == 200
    for response in (
        httpx.put(url, content=b"overwritten", headers=_headers(server, reader)),
        httpx.delete(url, headers=_headers(server, reader)),
    ):
        assert response.status_code == 403
        assert response.json()["error_code"] == "PERMISSION_DENIED"
    assert httpx.get(url, headers=_headers(server)).content == b"secret"


def test_writes_to_a_deleted_run_are_refused(
    client: MlflowClient, server: LiveServer, tmp_path: Path
) -> None:
    mlflow.set_experiment("Artifacts deleted run")
    with mlflow.start_run() as run:
        pass
    client.delete_run(run.info.run_id)
    response = httpx.put(
        server.url + _proxy_path(run, "late.txt"), content=b"late", headers=_headers(server)
    )
    assert (response.status_code, response.json()["error_code"]) == (
        400,
        "INVALID_PARAMETER_VALUE",
    )


def test_a_project_tracking_uri_keeps_artifacts_in_that_project(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async def create_project(session: AsyncSession) -> int:
        admin = await session.scalar(sa.select(User).where(User.is_admin.is_(True)).limit(1))
        project = await projects.create_project(session, path="art-team", owner=admin)
        return project.id

    project_id = _in_database(server, create_project, write=True)
    tracking_uri = f"{server.url}/projects/art-team/mlflow"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.admin_token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    (tmp_path / "p.txt").write_bytes(b"project bytes")
    try:
        mlflow.set_experiment("Team artifacts")
        with mlflow.start_run() as run:
            mlflow.log_artifact(str(tmp_path / "p.txt"))
        assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["p.txt"]
        out = client.download_artifacts(run.info.run_id, "p.txt", str(tmp_path / "out"))
        assert Path(out).read_bytes() == b"project bytes"
    finally:
        mlflow.set_tracking_uri(server.url)

    async def recorded(session: AsyncSession) -> tuple[int, int, list[str]]:
        candidate = await session.scalar(
            sa.select(Candidate).where(Candidate.eid == run.info.run_id)
        )
        assert candidate is not None
        package = await packages.candidate_package(session, candidate=candidate)
        files = await packages.list_files(session, package=package)
        return candidate.project_id, package.project_id, [f.path for f in files]

    assert _in_database(server, recorded) == (project_id, project_id, ["p.txt"])
    # The same run is not reachable through the default project's proxy.
    response = httpx.get(server.url + _proxy_path(run, "p.txt"), headers=_headers(server))
    assert response.status_code == 404
