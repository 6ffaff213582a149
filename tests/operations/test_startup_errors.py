"""A `modelreg` command that cannot start says why in one line on stderr, naming the
cause and the setting to change, and exits 2 (fix the command or a setting) or 3 (a
server it needs does not answer; retry later). No traceback, no half-done start."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest
from aiobotocore.session import get_session
from sqlalchemy.engine import make_url

from app.storage import ArtifactStoreUnavailableError, S3ArtifactStore
from tests.cli_support import clean_environment, run_modelreg
from tests.clients import app_settings, serving
from tests.services import free_port

REGION = "us-east-1"
PASSWORD = "hunter2-do-not-print"


def _one_line(result: subprocess.CompletedProcess[str], exit_code: int) -> str:
    """The single stderr line of a failed command, once its shape is checked."""
    assert result.returncode == exit_code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("modelreg: ")
    assert result.stdout == ""
    return lines[0]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


# --- the database ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(("serve", "--port", "PORT"), id="serve"),
        pytest.param(("migrate",), id="migrate"),
        pytest.param(("user", "create", "bob"), id="user-create"),
        pytest.param(("token", "list"), id="token-list"),
    ],
)
def test_an_unreachable_postgres_is_one_line_naming_host_port_and_setting(
    arguments: tuple[str, ...], workdir: Path
) -> None:
    port = free_port()
    arguments = tuple(str(free_port()) if word == "PORT" else word for word in arguments)
    environment = clean_environment(
        MODELREG_DATABASE_URL=f"postgresql://nobody:{PASSWORD}@127.0.0.1:{port}/x"
    )

    line = _one_line(run_modelreg(*arguments, cwd=workdir, environment=environment), 3)

    assert line == (
        f"modelreg: cannot reach PostgreSQL at 127.0.0.1:{port} (MODELREG_DATABASE_URL): "
        "Connection refused"
    )
    assert not (workdir / "data").exists()


def test_a_missing_postgres_database_is_a_refusal_with_exit_code_2(
    postgres_url: str, workdir: Path
) -> None:
    url = make_url(postgres_url).set(drivername="postgresql", database="no_such_database")
    environment = clean_environment(MODELREG_DATABASE_URL=url.render_as_string(False))

    line = _one_line(run_modelreg("migrate", cwd=workdir, environment=environment), 2)

    assert f"PostgreSQL at {url.host}:{url.port} refused the connection" in line
    assert "(MODELREG_DATABASE_URL)" in line
    assert 'database "no_such_database" does not exist' in line


@pytest.mark.parametrize(
    "arguments",
    [("user", "list"), ("token", "create", "--user", "admin")],
    ids=["user-list", "token-create"],
)
def test_a_command_run_away_from_the_data_directory_names_its_absolute_path_and_setting(
    arguments: tuple[str, ...], workdir: Path
) -> None:
    result = run_modelreg(*arguments, cwd=workdir, environment=clean_environment())

    assert _one_line(result, 2) == (
        f"modelreg: no database at {workdir / 'data' / 'modelreg.db'}: MODELREG_DATA_DIR (data)"
        " is relative to the working directory; run the command where `modelreg serve` runs,"
        " or set MODELREG_DATA_DIR to an absolute path"
    )
    # Nothing was created in the wrong place.
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_a_data_directory_that_cannot_be_created_is_one_line_with_its_absolute_path(
    command: str, workdir: Path
) -> None:
    (workdir / "blocked").write_text("a file where a directory should be")
    environment = clean_environment(MODELREG_DATA_DIR="blocked/data")
    arguments = ("serve", "--port", str(free_port())) if command == "serve" else ("migrate",)

    line = _one_line(run_modelreg(*arguments, cwd=workdir, environment=environment), 2)

    assert line == (
        f"modelreg: cannot create the data directory {workdir / 'blocked' / 'data'} "
        "(MODELREG_DATA_DIR): Not a directory"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="file permissions do not bind root")
def test_an_unwritable_data_directory_is_one_line(workdir: Path) -> None:
    data = workdir / "data"
    data.mkdir(mode=0o500)
    try:
        result = run_modelreg("migrate", cwd=workdir, environment=clean_environment())
    finally:
        data.chmod(0o700)

    line = _one_line(result, 2)
    assert line.startswith(
        f"modelreg: the data directory {data} is not writable (MODELREG_DATA_DIR)"
    )


def test_a_database_that_was_never_migrated_asks_for_modelreg_migrate(workdir: Path) -> None:
    path = workdir / "empty.db"
    sqlite3.connect(path).close()
    environment = clean_environment(MODELREG_DATABASE_URL=f"sqlite:///{path}")

    line = _one_line(run_modelreg("user", "list", cwd=workdir, environment=environment), 2)

    assert line == (
        f"modelreg: the schema of the SQLite database {path} is not at the newest migration "
        "(MODELREG_DATABASE_URL); run `modelreg migrate`"
    )


# --- S3 --------------------------------------------------------------------------------


def _without_aws_credentials(tmp_path: Path, **settings: str) -> dict[str, str]:
    """An environment where botocore finds no credentials at all, plus `settings`."""
    environment = {k: v for k, v in clean_environment(**settings).items() if "AWS" not in k}
    environment.update(
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_DEFAULT_REGION=REGION,
    )
    return environment


def _with_aws_credentials(tmp_path: Path, **settings: str) -> dict[str, str]:
    environment = _without_aws_credentials(tmp_path, **settings)
    environment.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    return environment


def _tables(database_path: Path) -> set[str]:
    with sqlite3.connect(database_path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


def test_s3_without_credentials_stops_serve_before_the_administrator_is_created(
    s3_endpoint_url: str, tmp_path: Path, workdir: Path
) -> None:
    environment = _without_aws_credentials(
        tmp_path, MODELREG_ARTIFACTS="s3://artifacts", MODELREG_S3_ENDPOINT_URL=s3_endpoint_url
    )

    result = run_modelreg("serve", "--port", str(free_port()), cwd=workdir, environment=environment)

    assert _one_line(result, 2) == (
        "modelreg: artifact storage: no S3 credentials were found: set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (or another AWS credential source) (MODELREG_ARTIFACTS="
        f"s3://artifacts, MODELREG_S3_ENDPOINT_URL={s3_endpoint_url})"
    )
    # Stopped before migrating, so before any administrator (and its token) existed.
    assert _tables(workdir / "data" / "modelreg.db") == set()


def test_s3_with_a_missing_bucket_stops_serve_with_one_line(
    s3_endpoint_url: str, tmp_path: Path, workdir: Path
) -> None:
    bucket = f"missing-{uuid.uuid4().hex[:12]}"
    environment = _with_aws_credentials(
        tmp_path,
        MODELREG_ARTIFACTS=f"s3://{bucket}/models",
        MODELREG_S3_ENDPOINT_URL=s3_endpoint_url,
    )

    result = run_modelreg("serve", "--port", str(free_port()), cwd=workdir, environment=environment)

    assert _one_line(result, 2) == (
        f"modelreg: artifact storage: the bucket '{bucket}' does not exist (MODELREG_ARTIFACTS="
        f"s3://{bucket}/models, MODELREG_S3_ENDPOINT_URL={s3_endpoint_url})"
    )


def test_an_unreachable_s3_endpoint_is_exit_code_3(tmp_path: Path, workdir: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    environment = _with_aws_credentials(
        tmp_path, MODELREG_ARTIFACTS="s3://artifacts", MODELREG_S3_ENDPOINT_URL=endpoint
    )

    result = run_modelreg("serve", "--port", str(free_port()), cwd=workdir, environment=environment)

    line = _one_line(result, 3)
    assert line.startswith(f"modelreg: artifact storage: cannot reach the S3 endpoint {endpoint}")
    assert line.endswith(
        f"(MODELREG_ARTIFACTS=s3://artifacts, MODELREG_S3_ENDPOINT_URL={endpoint})"
    )


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This process's environment as `_with_aws_credentials` builds it."""
    for name in [name for name in os.environ if "AWS" in name]:
        monkeypatch.delenv(name)
    for name, value in _with_aws_credentials(tmp_path).items():
        if "AWS" in name:
            monkeypatch.setenv(name, value)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_readyz_checks_the_s3_bucket_and_the_credentials(
    aws_environment: None,
    s3_endpoint_url: str,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = f"ready-{uuid.uuid4().hex[:12]}"
    async with get_session().create_client(
        "s3", endpoint_url=s3_endpoint_url, region_name=REGION
    ) as client:
        await client.create_bucket(Bucket=bucket)

    async def ready(location: str) -> tuple[int, dict[str, str]]:
        settings = app_settings(tmp_path, database_url).model_copy(
            update={"artifacts": location, "s3_endpoint_url": s3_endpoint_url}
        )
        async with serving(settings) as client:
            response = await client.get("/readyz")
        return response.status_code, response.json()["checks"]

    existing = await ready(f"s3://{bucket}")
    missing = await ready(f"s3://{bucket}-gone")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    without_credentials = await ready(f"s3://{bucket}")

    assert existing == (200, {"database": "ok", "storage": "ok"})
    misconfigured = {"database": "ok", "storage": "misconfigured; see the server log"}
    assert missing == (503, misconfigured)
    assert without_credentials == (503, misconfigured)


async def test_the_s3_probe_tells_a_refusal_from_an_outage(
    aws_environment: None, s3_endpoint_url: str
) -> None:
    async with S3ArtifactStore("nowhere", endpoint_url=s3_endpoint_url, region=REGION) as store:
        with pytest.raises(ArtifactStoreUnavailableError) as refused:
            await store.probe()
    dead_endpoint = f"http://127.0.0.1:{free_port()}"
    async with S3ArtifactStore("nowhere", endpoint_url=dead_endpoint, region=REGION) as store:
        with pytest.raises(ArtifactStoreUnavailableError) as unreachable:
            await store.probe()

    assert (refused.value.message, refused.value.transient) == (
        "the bucket 'nowhere' does not exist",
        False,
    )
    assert unreachable.value.message.startswith(f"cannot reach the S3 endpoint {dead_endpoint}")
    assert unreachable.value.transient


# --- the port --------------------------------------------------------------------------


def test_serve_on_a_busy_port_stops_before_anything_is_created(workdir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_modelreg(
            "serve", "--port", str(port), cwd=workdir, environment=clean_environment()
        )

    assert _one_line(result, 3) == (
        f"modelreg: port {port} on 127.0.0.1 is already in use; stop what holds it, "
        "or choose another port with --port"
    )
    # No database, so no administrator whose only token would be lost with this output.
    assert list(workdir.iterdir()) == []


def test_serve_on_an_address_of_no_interface_names_host_and_port(workdir: Path) -> None:
    port = free_port()
    # 192.0.2.0/24 is reserved for documentation: no machine has it.
    result = run_modelreg(
        "serve", "--host", "192.0.2.1", "--port", str(port), cwd=workdir,
        environment=clean_environment(),
    )  # fmt: skip

    assert _one_line(result, 2) == (
        f"modelreg: cannot listen on 192.0.2.1:{port} (--host, --port): "
        "Cannot assign requested address"
    )


# --- the worker ------------------------------------------------------------------------


def test_worker_without_redis_is_one_line_naming_the_setting(workdir: Path) -> None:
    result = run_modelreg("worker", cwd=workdir, environment=clean_environment())

    assert "MODELREG_REDIS_URL" in _one_line(result, 2)


def test_worker_with_unreachable_redis_is_one_line_naming_host_port_and_setting(
    workdir: Path,
) -> None:
    port = free_port()
    environment = clean_environment(MODELREG_REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:{port}/0")

    line = _one_line(run_modelreg("worker", cwd=workdir, environment=environment), 3)

    assert line.startswith(
        f"modelreg: cannot reach Redis at 127.0.0.1:{port} (MODELREG_REDIS_URL): "
    )
    assert "Connection refused" in line
    assert PASSWORD not in line
