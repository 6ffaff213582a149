"""Administration through the `modelreg` command as an operator runs it: users, tokens,
projects and members on a real database, and the administrator `modelreg serve` creates
on its first start."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import itertools
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from app.db import Database, utcnow
from app.models import AccessToken, AuditEvent, Membership, Project, Role, User, Visibility
from app.services import auth
from app.services.actor import Actor
from app.settings import Settings
from tests.services import free_port

MODELREG = str(Path(sys.executable).with_name("modelreg"))
COMMAND_TIMEOUT = 60.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
TOKEN_LINE = re.compile(r"access token \(shown once\): (mrpat-\S+)")
ADMIN_QUERY = "{ viewer { user { username isAdmin } } }"
T = TypeVar("T")

_database_numbers = itertools.count(1)


# --- running the command ---------------------------------------------------------------


def _environment(**settings: str) -> dict[str, str]:
    """The current environment without any MODELREG_* variable, plus `settings`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    environment.update(settings)
    return environment


def _run(
    *arguments: str, cwd: Path, environment: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MODELREG, *arguments],
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def _ok(*arguments: str, cwd: Path, environment: dict[str, str]) -> str:
    """Run a command that must succeed; its stdout."""
    result = _run(*arguments, cwd=cwd, environment=environment)
    assert result.returncode == 0, f"{arguments}: {result.stderr}"
    return result.stdout


def _in_thread(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on its own event loop, away from the test's."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()


def _driver_url(url: str) -> str:
    """The URL as the app resolves it (with its async driver)."""
    return Settings(database_url=url).resolved_database_url


async def _authenticate(url: str, secret: str) -> tuple[Actor, AccessToken]:
    database = Database(_driver_url(url))
    try:
        actor = await auth.authenticate(database, secret)
        async with database.session(read_only=True) as session:
            token = await session.scalar(
                sa.select(AccessToken).where(AccessToken.digest == auth.digest(secret))
            )
        assert token is not None
        return actor, token
    finally:
        await database.dispose()
        auth.forget_cached_tokens()


async def _registry_state(url: str) -> dict[str, Any]:
    """What the administration commands leave behind, as plain values."""
    database = Database(_driver_url(url))
    try:
        async with database.session(read_only=True) as session:
            members = (
                await session.execute(
                    sa.select(Project.path, User.username, Membership.role)
                    .join(Membership, Membership.project_id == Project.id)
                    .join(User, User.id == Membership.user_id)
                    .order_by(Project.path, User.username)
                )
            ).all()
            visibility = dict(
                (await session.execute(sa.select(Project.path, Project.visibility))).all()
            )
            events = (
                await session.execute(
                    sa.select(AuditEvent.action, AuditEvent.actor_id).order_by(AuditEvent.id)
                )
            ).all()
            usernames = list(await session.scalars(sa.select(User.username).order_by(User.id)))
    finally:
        await database.dispose()
    return {
        "members": [tuple(row) for row in members],
        "visibility": visibility,
        "events": [tuple(row) for row in events],
        "users": usernames,
    }


# --- databases -------------------------------------------------------------------------


async def _create_postgres_database(postgres_url: str, name: str) -> None:
    url = make_url(postgres_url)
    connection = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database="postgres"
    )
    try:
        await connection.execute(f"CREATE DATABASE {name}")
    finally:
        await connection.close()


async def _drop_postgres_database(postgres_url: str, name: str) -> None:
    url = make_url(postgres_url)
    connection = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database="postgres"
    )
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await connection.close()


@pytest.fixture
def empty_database_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """The URL of a database with no tables yet, as an operator would write it."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    postgres_url: str = request.getfixturevalue("postgres_url")
    name = f"modelreg_cli_{os.getpid()}_{next(_database_numbers)}"
    _in_thread(_create_postgres_database(postgres_url, name))
    try:
        yield (
            make_url(postgres_url)
            .set(drivername="postgresql", database=name)
            .render_as_string(False)
        )
    finally:
        _in_thread(_drop_postgres_database(postgres_url, name))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


# --- users, tokens, projects and members -----------------------------------------------


def test_migrate_then_create_user_token_project_and_member_through_the_command(
    empty_database_url: str, workdir: Path
) -> None:
    environment = _environment(MODELREG_DATABASE_URL=empty_database_url)

    _ok("migrate", cwd=workdir, environment=environment)
    assert _ok("user", "create", "alice", cwd=workdir, environment=environment).strip() == (
        "created user 'alice'"
    )
    issued_at = utcnow()
    printed = _ok(
        "token",
        "create",
        "--user",
        "alice",
        "--scopes",
        "read_api",
        "--expires-in",
        "7",
        cwd=workdir,
        environment=environment,
    )
    _ok(
        "project",
        "create",
        "team",
        "--owner",
        "alice",
        "--visibility",
        "public",
        cwd=workdir,
        environment=environment,
    )
    _ok("user", "create", "bob", cwd=workdir, environment=environment)
    _ok("member", "add", "team", "bob", "developer", cwd=workdir, environment=environment)

    # The token is the one line printed, and it authenticates as alice, read-only.
    lines = printed.splitlines()
    assert len(lines) == 1, printed
    secret = lines[0]
    assert secret.startswith("mrpat-")
    actor, token = _in_thread(_authenticate(empty_database_url, secret))
    assert (actor.username, actor.is_admin, actor.scopes) == (
        "alice",
        False,
        frozenset({"read_api"}),
    )
    assert token.expires_at is not None
    expected_expiry = issued_at + dt.timedelta(days=7)
    assert abs(token.expires_at - expected_expiry) < dt.timedelta(minutes=1)

    state = _in_thread(_registry_state(empty_database_url))
    assert state["visibility"]["team"] is Visibility.PUBLIC
    assert [m for m in state["members"] if m[0] == "team"] == [
        ("team", "alice", Role.OWNER),
        ("team", "bob", Role.DEVELOPER),
    ]
    # Every change is audited, made by the operator (no user).
    assert state["events"] == [
        ("user.create", None),
        ("token.create", None),
        ("project.create", None),
        ("user.create", None),
        ("member.add", None),
    ]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A migrated SQLite registry with users alice and bob, and alice's project `team`;
    its environment. Shared by the tests of failing commands, which must change nothing."""
    directory = tmp_path_factory.mktemp("registry")
    environment = _environment(MODELREG_DATABASE_URL=f"sqlite:///{directory / 'registry.db'}")
    for arguments in (
        ("migrate",),
        ("user", "create", "alice"),
        ("user", "create", "bob"),
        ("project", "create", "team", "--owner", "alice"),
    ):
        _ok(*arguments, cwd=directory, environment=environment)
    return environment


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(
            ("token", "create", "--user", "nobody"),
            "User 'nobody' does not exist",
            id="token-for-unknown-user",
        ),
        pytest.param(
            ("member", "add", "team", "nobody", "developer"),
            "User 'nobody' does not exist",
            id="member-unknown-user",
        ),
        pytest.param(
            ("project", "create", "other", "--owner", "nobody"),
            "User 'nobody' does not exist",
            id="project-owner-unknown-user",
        ),
        pytest.param(("user", "create", "alice"), "User 'alice' already exists", id="dup-user"),
        pytest.param(("user", "create", "-bad name"), "is not a valid username", id="bad-username"),
        pytest.param(
            ("project", "create", "Bad Path"), "is not a valid project path", id="bad-project-path"
        ),
        pytest.param(("project", "create", "team"), "already exists", id="dup-project"),
        pytest.param(
            ("member", "add", "nowhere", "alice", "developer"),
            "Project 'nowhere' does not exist",
            id="member-unknown-project",
        ),
        pytest.param(
            ("token", "create", "--user", "alice", "--scopes", "write"),
            "scopes must be",
            id="token-bad-scope",
        ),
    ],
)
def test_an_administration_error_is_one_stderr_line_with_exit_code_2_and_changes_nothing(
    arguments: tuple[str, ...],
    message: str,
    registry: dict[str, str],
    workdir: Path,
) -> None:
    url = registry["MODELREG_DATABASE_URL"]
    before = _in_thread(_registry_state(url))

    result = _run(*arguments, cwd=workdir, environment=registry)

    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("modelreg: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert _in_thread(_registry_state(url)) == before


def test_an_unknown_role_is_rejected_by_the_argument_parser_with_exit_code_2(
    registry: dict[str, str], workdir: Path
) -> None:
    url = registry["MODELREG_DATABASE_URL"]
    before = _in_thread(_registry_state(url))

    result = _run("member", "add", "team", "bob", "emperor", cwd=workdir, environment=registry)

    assert result.returncode == 2
    assert "argument role: invalid choice: 'emperor'" in result.stderr
    assert result.stderr.splitlines()[0].startswith("usage: modelreg member add")
    assert "Traceback" not in result.stderr
    assert _in_thread(_registry_state(url)) == before


# --- the first administrator ------------------------------------------------------------


class Server:
    """`modelreg serve` on a free port, its stdout and stderr kept apart."""

    def __init__(self, workdir: Path, environment: dict[str, str], name: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = workdir.parent / f"{name}.stdout"
        self.stderr_path = workdir.parent / f"{name}.stderr"
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                [MODELREG, "serve", "--port", str(self.port)],
                cwd=workdir,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(
            errors="replace"
        )

    def stderr_lines(self) -> list[str]:
        return self.stderr_path.read_text(errors="replace").splitlines()

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(base_url=self.base_url, trust_env=False, timeout=2) as client:
            while True:
                if self.process.poll() is not None:
                    pytest.fail(
                        f"modelreg serve exited with {self.process.returncode}:\n{self.output()}"
                    )
                try:
                    if client.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"modelreg serve did not answer within {START_TIMEOUT:.0f}s")
                time.sleep(0.1)

    def viewer(self, token: str) -> httpx.Response:
        with httpx.Client(base_url=self.base_url, trust_env=False, timeout=10) as client:
            return client.post(
                "/graphql",
                json={"query": ADMIN_QUERY},
                headers={"Authorization": f"Bearer {token}"},
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Servers:
    """Starts servers and stops every one of them, whatever the test did."""

    def __init__(self) -> None:
        self.started: list[Server] = []

    def start(self, workdir: Path, environment: dict[str, str]) -> Server:
        server = Server(workdir, environment, f"serve-{len(self.started) + 1}")
        self.started.append(server)
        server.wait_until_ready()
        return server


@pytest.fixture
def servers() -> Iterator[Servers]:
    running = Servers()
    try:
        yield running
    finally:
        for server in running.started:
            server.stop()


def _admin_rows(database_path: Path) -> tuple[list[tuple[Any, ...]], int]:
    """The users (username, is_admin) and the number of tokens in an embedded database."""
    with sqlite3.connect(database_path) as connection:
        users = connection.execute("SELECT username, is_admin FROM users ORDER BY id").fetchall()
        (tokens,) = connection.execute("SELECT count(*) FROM access_tokens").fetchone()
    return users, int(tokens)


def test_first_serve_prints_the_admin_token_once_and_a_second_start_creates_no_other_admin(
    servers: Servers, workdir: Path
) -> None:
    first = servers.start(workdir, _environment())
    response = first.viewer(_token_printed_by(first))
    first.stop()

    token_lines = [line for line in first.stderr_lines() if "access token" in line]
    assert len(token_lines) == 1, first.output()
    match = TOKEN_LINE.search(token_lines[0])
    assert match is not None, token_lines[0]
    secret = match.group(1)
    # The secret is shown on that one line and nowhere else (not in any log line).
    assert first.output().count(secret) == 1
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"viewer": {"user": {"username": "admin", "isAdmin": True}}}}

    second = servers.start(workdir, _environment())
    again = second.viewer(secret)
    second.stop()

    assert "access token" not in second.output()
    assert "mrpat-" not in second.output()
    assert again.status_code == 200, again.text
    assert again.json()["data"]["viewer"]["user"]["username"] == "admin"
    assert _admin_rows(workdir / "data" / "modelreg.db") == ([("admin", 1)], 1)


def _token_printed_by(server: Server) -> str:
    match = TOKEN_LINE.search(server.stderr_path.read_text(errors="replace"))
    assert match is not None, server.output()
    return match.group(1)


def test_serve_with_a_bootstrap_admin_token_creates_the_admin_with_that_token(
    servers: Servers, workdir: Path
) -> None:
    chosen = "bootstrap-admin-token-0123456x"
    assert len(chosen) == 30

    server = servers.start(workdir, _environment(MODELREG_BOOTSTRAP_ADMIN_TOKEN=chosen))
    response = server.viewer(chosen)
    server.stop()

    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"viewer": {"user": {"username": "admin", "isAdmin": True}}}}
    # A token the operator chose is not printed back.
    assert "access token" not in server.output()
    assert chosen not in server.output()
    assert _admin_rows(workdir / "data" / "modelreg.db") == ([("admin", 1)], 1)


def test_serve_with_a_bootstrap_admin_token_under_20_characters_stops_with_one_line(
    workdir: Path,
) -> None:
    too_short = "short-secret-0123"
    assert len(too_short) < 20

    result = _run(
        "serve",
        "--port",
        str(free_port()),
        cwd=workdir,
        environment=_environment(MODELREG_BOOTSTRAP_ADMIN_TOKEN=too_short),
    )

    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "MODELREG_BOOTSTRAP_ADMIN_TOKEN" in lines[0]
    assert too_short not in result.stderr
    assert not (workdir / "data").exists()
