"""Administration through the `modelreg` command as an operator runs it: users, tokens,
projects and members on a real database, and the administrator `modelreg serve` creates
on its first start."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime as dt
import itertools
import json
import os
import re
import sqlite3
import subprocess
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from app import cli
from app.db import Database, utcnow
from app.errors import UnauthenticatedError
from app.models import AccessToken, AuditEvent, Membership, Project, Role, User, Visibility
from app.services import auth, projects, users
from app.services.actor import OPERATOR, Actor
from app.settings import Settings
from tests.cli_support import MODELREG, clean_environment, run_modelreg
from tests.services import free_port

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
TOKEN_LINE = re.compile(r"access token \(shown once\): (mrpat-\S+)")
ADMIN_QUERY = "{ viewer { user { username isAdmin } } }"
T = TypeVar("T")

_database_numbers = itertools.count(1)


# --- running the command ---------------------------------------------------------------


def _ok(*arguments: str, cwd: Path, environment: dict[str, str]) -> str:
    """Run a command that must succeed; its stdout."""
    result = run_modelreg(*arguments, cwd=cwd, environment=environment)
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
    environment = clean_environment(MODELREG_DATABASE_URL=empty_database_url)

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
    environment = clean_environment(MODELREG_DATABASE_URL=f"sqlite:///{directory / 'registry.db'}")
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
        pytest.param(("user", "block", "nobody"), "User 'nobody' does not exist", id="block"),
        pytest.param(("user", "unblock", "nobody"), "User 'nobody' does not exist", id="unblock"),
        pytest.param(
            ("token", "list", "--user", "nobody"), "User 'nobody' does not exist", id="token-list"
        ),
        pytest.param(("token", "revoke", "999"), "Token 999 does not exist", id="token-revoke"),
        pytest.param(
            ("member", "list", "nowhere"), "Project 'nowhere' does not exist", id="member-list"
        ),
        pytest.param(
            ("member", "remove", "team", "alice"),
            "'team' must keep at least one owner",
            id="member-remove-last-owner",
        ),
        pytest.param(
            ("member", "remove", "team", "bob"),
            "'bob' is not a member of 'team'",
            id="member-remove-non-member",
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

    result = run_modelreg(*arguments, cwd=workdir, environment=registry)

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

    result = run_modelreg(
        "member", "add", "team", "bob", "emperor", cwd=workdir, environment=registry
    )

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
    first = servers.start(workdir, clean_environment())
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

    second = servers.start(workdir, clean_environment())
    again = second.viewer(secret)
    second.stop()

    assert "access token" not in second.output()
    assert "mrpat-" not in second.output()
    # ...but it says how to get one.
    assert (
        "modelreg: the administrator is 'admin'; to get a new token for it, run "
        "`modelreg token create --user admin`"
    ) in second.stderr_lines()
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

    server = servers.start(workdir, clean_environment(MODELREG_BOOTSTRAP_ADMIN_TOKEN=chosen))
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

    result = run_modelreg(
        "serve",
        "--port",
        str(free_port()),
        cwd=workdir,
        environment=clean_environment(MODELREG_BOOTSTRAP_ADMIN_TOKEN=too_short),
    )

    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "MODELREG_BOOTSTRAP_ADMIN_TOKEN" in lines[0]
    assert too_short not in result.stderr
    assert not (workdir / "data").exists()


# --- listing, blocking, revoking and removing -------------------------------------------


@dataclass(frozen=True)
class Team:
    """A registry where alice owns `team` and bob develops in it with the token `ci`."""

    url: str
    environment: dict[str, str]
    bob_secret: str
    bob_token_id: int


@pytest.fixture
async def team(database: Database) -> Team:
    async with database.session() as session:
        alice = await users.create_user(session, username="alice", actor=OPERATOR)
        bob = await users.create_user(
            session, username="bob", name="Bob Builder", email="bob@example.com", actor=OPERATOR
        )
        project = await projects.create_project(
            session, path="team", owner=alice, visibility=Visibility.PUBLIC, actor=OPERATOR
        )
        await projects.set_member(
            session, project=project, user=bob, role=Role.DEVELOPER, actor=OPERATOR
        )
        token, secret = await auth.create_token(session, user=bob, name="ci", actor=OPERATOR)
    return Team(
        url=database.url,
        environment=clean_environment(MODELREG_DATABASE_URL=database.url),
        bob_secret=secret,
        bob_token_id=token.id,
    )


def _json(*arguments: str, team: Team, cwd: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(
        _ok(*arguments, "--json", cwd=cwd, environment=team.environment)
    )
    return records


def _table(*arguments: str, team: Team, cwd: Path) -> list[list[str]]:
    """The printed table, each line split into its cells (cells hold no double space)."""
    lines = _ok(*arguments, cwd=cwd, environment=team.environment).splitlines()
    return [re.split(r" {2,}", line) for line in lines]


def _events(team: Team) -> list[tuple[str, int | None]]:
    events: list[tuple[str, int | None]] = _in_thread(_registry_state(team.url))["events"]
    return events


def _authentication_failure(team: Team, secret: str) -> str:
    with pytest.raises(UnauthenticatedError) as failure:
        _in_thread(_authenticate(team.url, secret))
    return failure.value.message


# Listing is the same query on both databases; the changes run on both.
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_user_list_prints_every_user_as_a_table_and_as_json(team: Team, workdir: Path) -> None:
    records = _json("user", "list", team=team, cwd=workdir)
    table = _table("user", "list", team=team, cwd=workdir)

    assert [{k: v for k, v in r.items() if k != "created_at"} for r in records] == [
        {"username": "alice", "name": None, "email": None, "admin": False, "blocked": False},
        {
            "username": "bob",
            "name": "Bob Builder",
            "email": "bob@example.com",
            "admin": False,
            "blocked": False,
        },
    ]
    created = dt.datetime.fromisoformat(records[1]["created_at"])
    assert abs(created - utcnow()) < dt.timedelta(minutes=5)
    assert table[0] == ["USERNAME", "NAME", "EMAIL", "ADMIN", "BLOCKED", "CREATED"]
    assert table[1][:5] == ["alice", "-", "-", "no", "no"]
    assert table[2][:5] == ["bob", "Bob Builder", "bob@example.com", "no", "no"]
    assert table[2][5] == created.strftime("%Y-%m-%d %H:%M UTC")


def test_user_block_stops_the_users_tokens_and_unblock_restores_them(
    team: Team, workdir: Path
) -> None:
    events_before = _events(team)

    blocked = _ok("user", "block", "bob", cwd=workdir, environment=team.environment)
    message = _authentication_failure(team, team.bob_secret)
    listed = _json("user", "list", team=team, cwd=workdir)
    again = _ok("user", "block", "bob", cwd=workdir, environment=team.environment)
    unblocked = _ok("user", "unblock", "bob", cwd=workdir, environment=team.environment)
    actor, _ = _in_thread(_authenticate(team.url, team.bob_secret))

    assert blocked == "blocked 'bob': their tokens no longer authenticate\n"
    assert message == "the token's user is blocked"
    assert [(r["username"], r["blocked"]) for r in listed] == [("alice", False), ("bob", True)]
    assert again == "'bob' is already blocked\n"
    assert unblocked == "unblocked 'bob': their tokens authenticate again\n"
    assert actor.username == "bob"
    # Each change is audited once, as the operator; the repeated block changed nothing.
    assert _events(team)[len(events_before) :] == [("user.block", None), ("user.unblock", None)]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_token_list_shows_every_token_and_never_a_secret(team: Team, workdir: Path) -> None:
    alice_secret = _ok(
        "token", "create", "--user", "alice", "--name", "laptop", "--scopes", "read_api",
        "--expires-in", "30", cwd=workdir, environment=team.environment,
    ).strip()  # fmt: skip

    everyone = _json("token", "list", team=team, cwd=workdir)
    bobs = _json("token", "list", "--user", "bob", team=team, cwd=workdir)
    table = _table("token", "list", team=team, cwd=workdir)
    printed = _ok("token", "list", cwd=workdir, environment=team.environment)
    printed += _ok("token", "list", "--json", cwd=workdir, environment=team.environment)

    assert [(t["name"], t["user"], t["scopes"]) for t in everyone] == [
        ("ci", "bob", ["api"]),
        ("laptop", "alice", ["read_api"]),
    ]
    assert everyone[0]["id"] == team.bob_token_id
    assert everyone[0]["expires_at"] is None
    expires = dt.datetime.fromisoformat(everyone[1]["expires_at"])
    assert abs(expires - (utcnow() + dt.timedelta(days=30))) < dt.timedelta(minutes=5)
    assert (everyone[1]["last_used_at"], everyone[1]["revoked_at"]) == (None, None)
    assert bobs == everyone[:1]
    assert table[0] == [
        *("ID", "NAME", "USER", "SCOPES"),
        *("CREATED", "EXPIRES", "LAST USED", "REVOKED"),
    ]
    assert table[1][:4] == [str(team.bob_token_id), "ci", "bob", "api"]
    assert table[1][5:] == ["-", "-", "-"]
    for secret in (team.bob_secret, alice_secret):
        assert secret not in printed
        assert auth.digest(secret) not in printed


def test_token_revoke_stops_the_token_for_good_and_is_audited(team: Team, workdir: Path) -> None:
    token_id = str(team.bob_token_id)
    events_before = _events(team)

    revoked = _ok("token", "revoke", token_id, cwd=workdir, environment=team.environment)
    message = _authentication_failure(team, team.bob_secret)
    again = _ok("token", "revoke", token_id, cwd=workdir, environment=team.environment)
    [listed] = _json("token", "list", "--user", "bob", team=team, cwd=workdir)

    assert revoked == f"revoked token {token_id}\n"
    assert message == "the access token has been revoked"
    assert again == f"token {token_id} was already revoked\n"
    revoked_at = dt.datetime.fromisoformat(listed["revoked_at"])
    assert abs(revoked_at - utcnow()) < dt.timedelta(minutes=5)
    assert _events(team)[len(events_before) :] == [("token.revoke", None)]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_project_list_prints_every_project(team: Team, workdir: Path) -> None:
    records = _json("project", "list", team=team, cwd=workdir)
    table = _table("project", "list", team=team, cwd=workdir)

    assert [(p["path"], p["name"], p["visibility"]) for p in records] == [
        ("default", "Default", "private"),
        ("team", "team", "public"),
    ]
    assert table[0] == ["PATH", "NAME", "VISIBILITY", "CREATED"]
    assert [row[:3] for row in table[1:]] == [
        ["default", "Default", "private"],
        ["team", "team", "public"],
    ]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_member_list_prints_each_member_with_their_role(team: Team, workdir: Path) -> None:
    records = _json("member", "list", "team", team=team, cwd=workdir)
    table = _table("member", "list", "team", team=team, cwd=workdir)
    nobody = _ok("member", "list", "default", cwd=workdir, environment=team.environment)

    assert records == [
        {"user": "alice", "name": None, "role": "owner"},
        {"user": "bob", "name": "Bob Builder", "role": "developer"},
    ]
    assert table == [
        ["USER", "NAME", "ROLE"],
        ["alice", "-", "owner"],
        ["bob", "Bob Builder", "developer"],
    ]
    assert nobody == "(none)\n"


def test_member_remove_takes_the_member_out_and_is_audited(team: Team, workdir: Path) -> None:
    events_before = _events(team)

    removed = _ok("member", "remove", "team", "bob", cwd=workdir, environment=team.environment)
    records = _json("member", "list", "team", team=team, cwd=workdir)

    assert removed == "removed 'bob' from 'team'\n"
    assert [r["user"] for r in records] == ["alice"]
    assert _events(team)[len(events_before) :] == [("member.remove", None)]


def _all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _all_parsers(child)


def test_every_command_option_and_argument_has_help() -> None:
    undocumented = [
        f"{parser.prog} {action.dest}"
        for parser in _all_parsers(cli._parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert undocumented == []


def test_serve_help_documents_host_port_and_the_exit_codes(workdir: Path) -> None:
    printed = _ok("serve", "--help", cwd=workdir, environment=clean_environment())
    flat = " ".join(printed.split())

    assert "--host HOST address to listen on (default: 127.0.0.1)" in flat
    assert "--port PORT TCP port to listen on (default: 8080)" in flat
    assert "3 the database, Redis or S3 does not answer, or the port is taken" in flat
