"""The package API: uploads, downloads and listings of version, candidate and generic
packages, their authorization, size limit and upload verification."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.db import Database
from app.models import Role
from app.services import auth, candidates, models, projects, users, versions
from app.services.actor import OPERATOR
from tests.clients import app_settings, bearer, serving
from tests.live_server import live_server

MLMODEL = b"""artifact_path: model
flavors:
  python_function:
    loader_module: mlflow.sklearn
    python_version: 3.11.9
  sklearn:
    pickled_model: model.pkl
    sklearn_version: 1.5.0
signature:
  inputs: '[{"type": "double", "name": "x", "required": true}]'
  outputs: '[{"type": "long", "required": true}]'
  params: null
"""

WAIT_SECONDS = 20


@dataclass
class Setup:
    client: httpx.AsyncClient
    database: Database
    tokens: dict[str, str]
    version_id: int
    candidate_iid: int

    def base(self, project: str = "proj") -> str:
        return f"/api/v1/projects/{project}/packages"

    def version_files(self, project: str = "proj") -> str:
        return f"{self.base(project)}/ml_models/{self.version_id}/files"

    def candidate_files(self) -> str:
        return f"{self.base()}/ml_models/candidate:{self.candidate_iid}/files"

    def generic(self, name: str = "tool", version: str = "1.0.0") -> str:
        return f"{self.base()}/generic/{name}/{version}"

    def auth(self, who: str = "admin") -> dict[str, str]:
        return bearer(self.tokens[who])

    async def status_of(self, files_url: str) -> str:
        response = await self.client.get(files_url, headers=self.auth())
        assert response.status_code == 200, response.text
        return str(response.json()["package"]["status"])

    async def settled(self, files_url: str) -> str:
        """The package's status once its uploads are verified (bounded wait)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while (status := await self.status_of(files_url)) == "processing":
            assert time.monotonic() < deadline, "the upload was not verified in time"
            await asyncio.sleep(0.05)
        return status


@pytest.fixture
async def setup(database_url: str, tmp_path: Path) -> AsyncIterator[Setup]:
    database = Database(database_url)
    tokens: dict[str, str] = {}
    async with database.session() as session:
        project = await projects.create_project(session, path="proj", actor=OPERATOR)
        await projects.create_project(session, path="elsewhere", actor=OPERATOR)
        for name, role in (
            ("admin", None),
            ("reporter", Role.REPORTER),
            ("developer", Role.DEVELOPER),
            ("outsider", None),
        ):
            user = await users.create_user(session, username=name, is_admin=name == "admin")
            if role is not None:
                await projects.set_member(
                    session, project=project, user=user, role=role, actor=OPERATOR
                )
            _, tokens[name] = await auth.create_token(session, user=user, name="t")
        model = await models.create_model(
            session, project=project, display_name="Churn", actor=OPERATOR
        )
        version = await versions.create_version(
            session, model=model, version="1.2.0", actor=OPERATOR
        )
        candidate = await candidates.create_candidate(session, model=model, actor=OPERATOR)
        version_id, candidate_iid = version.id, candidate.iid
    try:
        async with serving(app_settings(tmp_path, database_url)) as client:
            yield Setup(client, database, tokens, version_id, candidate_iid)
    finally:
        await database.dispose()


async def test_version_package_upload_list_download(setup: Setup) -> None:
    data = bytes(range(256)) * 40
    url = f"{setup.version_files()}/weights/model.bin"
    response = await setup.client.put(url, content=data, headers=setup.auth("developer"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["size"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert await setup.settled(setup.version_files()) == "default"

    listing = (await setup.client.get(setup.version_files(), headers=setup.auth("reporter"))).json()
    assert listing["package"] == {
        "type": "ml_model",
        "name": "churn",
        "version": "1.2.0",
        "status": "default",
    }
    assert listing["files"] == [
        {"path": "weights/model.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    ]

    got = await setup.client.get(url, headers=setup.auth("reporter"))
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["content-length"] == str(len(data))
    assert got.headers["x-package-status"] == "default"

    ranged = await setup.client.get(url, headers={**setup.auth(), "Range": "bytes=10-19"})
    assert ranged.status_code == 206
    assert ranged.content == data[10:20]
    assert ranged.headers["content-range"] == f"bytes 10-19/{len(data)}"
    suffix = await setup.client.get(url, headers={**setup.auth(), "Range": "bytes=-5"})
    assert suffix.status_code == 206 and suffix.content == data[-5:]
    outside = await setup.client.get(url, headers={**setup.auth(), "Range": "bytes=99999-"})
    assert outside.status_code == 416

    missing = await setup.client.get(f"{setup.version_files()}/nope", headers=setup.auth())
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


async def test_candidate_package(setup: Setup) -> None:
    url = f"{setup.candidate_files()}/notes.txt"
    empty = (await setup.client.get(setup.candidate_files(), headers=setup.auth())).json()
    assert empty == {"package": None, "files": []}
    response = await setup.client.put(url, content=b"hello", headers=setup.auth())
    assert response.status_code == 201, response.text
    assert await setup.settled(setup.candidate_files()) == "default"
    listing = (await setup.client.get(setup.candidate_files(), headers=setup.auth())).json()
    assert listing["package"]["version"] == f"candidate_{setup.candidate_iid}"
    got = await setup.client.get(url, headers=setup.auth())
    assert got.content == b"hello"


async def test_generic_package(setup: Setup) -> None:
    url = f"{setup.generic()}/dist/tool.tar.gz"
    response = await setup.client.put(url, content=b"archive", headers=setup.auth("developer"))
    assert response.status_code == 201, response.text
    deadline = time.monotonic() + WAIT_SECONDS
    while (got := await setup.client.get(url, headers=setup.auth("reporter"))).headers[
        "x-package-status"
    ] == "processing":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert got.status_code == 200
    assert got.content == b"archive"
    assert got.headers["x-package-status"] == "default"
    assert (
        await setup.client.get(f"{setup.generic('other')}/x", headers=setup.auth())
    ).status_code == 404
    bad = await setup.client.put(
        f"{setup.generic('bad name')}/x", content=b"", headers=setup.auth()
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_value"


async def test_bad_references_and_paths(setup: Setup) -> None:
    base = f"{setup.base()}/ml_models"
    for ref, status in (
        ("abc", 400),
        ("candidate:x", 400),
        ("999999", 404),
        ("candidate:999", 404),
    ):
        response = await setup.client.get(f"{base}/{ref}/files", headers=setup.auth())
        assert response.status_code == status, (ref, response.text)
        assert set(response.json()) == {"message", "error"}
    # A version of another project is not found through this one.
    other = await setup.client.get(setup.version_files("elsewhere"), headers=setup.auth())
    assert other.status_code == 404


@pytest.mark.parametrize(
    ("who", "method", "status"),
    [
        (None, "GET", 401),
        (None, "PUT", 401),
        ("outsider", "GET", 404),
        ("outsider", "PUT", 404),
        ("reporter", "GET", 200),
        ("reporter", "PUT", 403),
        ("developer", "PUT", 201),
        ("admin", "PUT", 201),
    ],
)
async def test_authorization(setup: Setup, who: str | None, method: str, status: int) -> None:
    url = f"{setup.generic()}/file.txt"
    if method == "GET":
        await setup.client.put(url, content=b"x", headers=setup.auth())
    headers = setup.auth(who) if who else {}
    response = await setup.client.request(method, url, content=b"y", headers=headers)
    assert response.status_code == status, response.text
    if status >= 400:
        expected = {401: "unauthenticated", 403: "forbidden", 404: "not_found"}[status]
        assert response.json()["error"] == expected
    if status == 401:
        assert "Bearer" in response.headers["www-authenticate"]
    bad_token = await setup.client.get(url, headers=bearer("not-a-valid-token-at-all-0000"))
    assert bad_token.status_code == 401


async def test_checksum_mismatch_marks_the_package_error(setup: Setup) -> None:
    url = f"{setup.version_files()}/model.pkl"
    wrong = hashlib.sha256(b"something else").hexdigest()
    response = await setup.client.put(
        url, content=b"pickled", headers={**setup.auth(), "X-Checksum-SHA256": wrong}
    )
    assert response.status_code == 201, response.text
    assert await setup.settled(setup.version_files()) == "error"
    got = await setup.client.get(url, headers=setup.auth())
    assert got.status_code == 409
    assert got.json()["error"] == "package_error"
    assert "X-Checksum-SHA256" in got.json()["message"]
    assert wrong in got.json()["message"]

    # Uploading the file again, right this time, repairs the package.
    right = hashlib.sha256(b"pickled").hexdigest()
    again = await setup.client.put(
        url, content=b"pickled", headers={**setup.auth(), "X-Checksum-SHA256": right.upper()}
    )
    assert again.status_code == 201, again.text
    assert await setup.settled(setup.version_files()) == "default"
    assert (await setup.client.get(url, headers=setup.auth())).content == b"pickled"


async def test_matching_checksum_and_malformed_checksum(setup: Setup) -> None:
    url = f"{setup.candidate_files()}/data.csv"
    right = hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    response = await setup.client.put(
        url, content=b"a,b\n1,2\n", headers={**setup.auth(), "X-Checksum-SHA256": right}
    )
    assert response.status_code == 201
    assert await setup.settled(setup.candidate_files()) == "default"
    malformed = await setup.client.put(
        url, content=b"x", headers={**setup.auth(), "X-Checksum-SHA256": "abc"}
    )
    assert malformed.status_code == 400


async def test_mlmodel_metadata_is_recorded(setup: Setup) -> None:
    response = await setup.client.put(
        f"{setup.version_files()}/model/MLmodel", content=MLMODEL, headers=setup.auth()
    )
    assert response.status_code == 201, response.text
    assert await setup.settled(setup.version_files()) == "default"
    async with setup.database.session(read_only=True) as session:
        project = await projects.get_project(session, path="proj")
        model = await models.get_model(session, project=project, name="churn")
        version = await versions.get_version(session, model=model, version="1.2.0")
        metadata = await versions.get_version_metadata(session, version=version)
    assert metadata["mlflow.flavors"] == "python_function,sklearn"
    assert metadata["mlflow.signature.inputs"].startswith('[{"type": "double"')
    assert "mlflow.signature.params" not in metadata

    candidate_upload = await setup.client.put(
        f"{setup.candidate_files()}/MLmodel", content=MLMODEL, headers=setup.auth()
    )
    assert candidate_upload.status_code == 201
    assert await setup.settled(setup.candidate_files()) == "default"
    async with setup.database.session(read_only=True) as session:
        project = await projects.get_project(session, path="proj")
        candidate = await candidates.get_candidate(
            session, project=project, iid=setup.candidate_iid
        )
        tags = await candidates.get_metadata(session, candidate=candidate)
    assert tags["mlflow.flavors"] == "python_function,sklearn"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_uploads_over_the_limit_answer_413(database_url: str, tmp_path: Path) -> None:
    with live_server(tmp_path, database_url, max_upload_size="1000") as server:
        headers = bearer(server.admin_token)
        url = f"{server.url}/api/v1/projects/default/packages/generic/big/1/blob"
        async with httpx.AsyncClient(timeout=30) as client:
            declared = await client.put(url, content=b"x" * 1001, headers=headers)
            assert declared.status_code == 413
            assert declared.json()["error"] == "payload_too_large"
            assert "1000 bytes" in declared.json()["message"]

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(6):
                    yield b"y" * 300

            streamed = await client.put(url, content=chunks(), headers=headers)
            assert streamed.status_code == 413
            assert (await client.get(url, headers=headers)).status_code == 404

            fits = await client.put(url, content=b"z" * 1000, headers=headers)
            assert fits.status_code == 201
            assert (await client.get(url, headers=headers)).content == b"z" * 1000
