"""Authentication and authorization through HTTP: personal access tokens sent as Bearer or
Basic credentials to /graphql on the in-process app, their scopes, their storage, the
audit trail of changes, and the member rules of projects."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette

from app.db import Database, utcnow
from app.main import create_app
from app.models import AccessToken, AuditEvent, Membership, Project, Role, User, Visibility
from app.services import auth, projects, users
from app.services.actor import OPERATOR, SCOPE_API, SCOPE_READ_API
from app.settings import Settings
from tests.statements import recorded
from workers.dispatch import create_dispatcher

VIEWER = "{ viewer { user { username } } }"
ERROR_FIELDS = "__typename ... on Error { message code field }"


# --- helpers ---------------------------------------------------------------------------


@dataclass
class Served:
    app: Starlette
    client: httpx.AsyncClient

    async def graphql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        authorization: str | None = None,
    ) -> httpx.Response:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if authorization is not None:
            headers["Authorization"] = authorization
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = variables
        return await self.client.post("/graphql", json=body, headers=headers)

    async def data(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        """The `data` of a request that must succeed without GraphQL errors."""
        response = await self.graphql(query, variables, token=token)
        assert response.status_code == 200, response.text
        payload: dict[str, Any] = response.json()
        assert "errors" not in payload, payload
        data: dict[str, Any] = payload["data"]
        return data


@contextlib.asynccontextmanager
async def serving(database_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    """The app with its lifespan started, and a client that talks to it in process."""
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir(exist_ok=True)
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, artifacts=str(artifacts)
    )
    app = create_app(settings, dispatcher_factory=create_dispatcher)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://modelreg.test"
        ) as client,
    ):
        yield Served(app=app, client=client)


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


async def add_user(
    database: Database,
    username: str,
    *,
    is_admin: bool = False,
    scopes: tuple[str, ...] = (SCOPE_API,),
    expires_at: dt.datetime | None = None,
) -> tuple[User, AccessToken, str]:
    """A user with one personal access token: the user, the token row and its secret."""
    async with database.session() as session:
        user = await users.create_user(session, username=username, is_admin=is_admin)
        token, secret = await auth.create_token(
            session, user=user, name=f"{username}-token", scopes=scopes, expires_at=expires_at
        )
    return user, token, secret


async def add_token(
    database: Database, user: User, *, scopes: tuple[str, ...] = (SCOPE_API,)
) -> tuple[AccessToken, str]:
    async with database.session() as session:
        return await auth.create_token(session, user=user, name="another", scopes=scopes)


async def add_project(database: Database, path: str, owner: User) -> Project:
    async with database.session() as session:
        return await projects.create_project(
            session, path=path, visibility=Visibility.PRIVATE, owner=owner, actor=OPERATOR
        )


async def add_member(database: Database, project_path: str, user: User, role: Role) -> None:
    async with database.session() as session:
        project = await projects.get_project(session, path=project_path)
        await projects.set_member(session, project=project, user=user, role=role, actor=OPERATOR)


async def contents(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables a request could change, to prove that it changed nothing."""
    names = ("users", "access_tokens", "projects", "memberships", "models", "audit_events")
    async with database.session(read_only=True) as session:
        result = {}
        for name in names:
            table = sa.table(name)
            rows = (await session.execute(sa.select(sa.text("*")).select_from(table))).all()
            result[name] = sorted((tuple(row) for row in rows), key=repr)
    return result


async def audit_count(database: Database) -> int:
    async with database.session(read_only=True) as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) or 0)


async def token_row(database: Database, token_id: int) -> AccessToken:
    async with database.session(read_only=True) as session:
        row = await session.get(AccessToken, token_id)
    assert row is not None
    return row


def assert_unauthenticated(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert "bearer" in response.headers["www-authenticate"].lower()
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}
    assert error["message"]


def viewer_name(response: httpx.Response) -> str | None:
    assert response.status_code == 200, response.text
    payload = response.json()
    assert "errors" not in payload, payload
    viewer = payload["data"]["viewer"]
    return None if viewer is None else str(viewer["user"]["username"])


# --- who is calling ------------------------------------------------------------------


async def test_a_valid_token_authenticates_as_bearer_and_as_basic_password_with_any_username(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    _, _, secret = await add_user(database, "alice")

    async with serving(database_url, tmp_path) as served:
        as_bearer = await served.graphql(VIEWER, authorization=f"Bearer {secret}")
        as_basic = await served.graphql(VIEWER, authorization=basic("anyuser", secret))
        as_basic_other_name = await served.graphql(VIEWER, authorization=basic("x", secret))

    assert viewer_name(as_bearer) == "alice"
    assert viewer_name(as_basic) == "alice"
    assert viewer_name(as_basic_other_name) == "alice"


async def test_a_request_without_authorization_header_is_anonymous_with_a_null_viewer(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    await add_user(database, "alice")

    async with serving(database_url, tmp_path) as served:
        response = await served.graphql(VIEWER)

    assert viewer_name(response) is None


# --- rejected credentials: 401, and nothing written -------------------------------------


async def test_an_expired_token_is_401_and_writes_nothing(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    _, token, secret = await add_user(
        database, "alice", expires_at=utcnow() + dt.timedelta(hours=1)
    )
    async with database.session() as session:
        await session.execute(
            sa.update(AccessToken)
            .where(AccessToken.id == token.id)
            .values(expires_at=utcnow() - dt.timedelta(minutes=1))
        )
    before = await contents(database)

    async with serving(database_url, tmp_path) as served:
        response = await served.graphql(VIEWER, token=secret)

    assert_unauthenticated(response)
    assert "expired" in response.json()["errors"][0]["message"]
    # A rejected token is not "used": its last_used_at stays unset.
    assert (await token_row(database, token.id)).last_used_at is None
    assert await contents(database) == before


async def test_a_token_revoked_by_its_owner_is_401_at_once_in_the_same_process(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    _, token, secret = await add_user(database, "alice")

    async with serving(database_url, tmp_path) as served:
        assert viewer_name(await served.graphql(VIEWER, token=secret)) == "alice"
        revoked = await served.data(
            "mutation($id: Int!) { tokenRevoke(id: $id) {"
            f" {ERROR_FIELDS} ... on AccessToken {{ id revokedAt }} }} }}",
            {"id": token.id},
            token=secret,
        )
        before = await contents(database)
        again = await served.graphql(VIEWER, token=secret)
        after = await contents(database)

    assert revoked["tokenRevoke"]["__typename"] == "AccessToken"
    assert revoked["tokenRevoke"]["revokedAt"] is not None
    assert_unauthenticated(again)
    assert "revoked" in again.json()["errors"][0]["message"]
    assert after == before


async def test_an_unknown_token_is_401_and_writes_nothing(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    await add_user(database, "alice")
    before = await contents(database)

    async with serving(database_url, tmp_path) as served:
        response = await served.graphql(VIEWER, token="mrpat-" + "x" * 40)

    assert_unauthenticated(response)
    assert await contents(database) == before


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Bearer", id="bearer-without-token"),
        pytest.param("Bearer a b", id="bearer-with-two-words"),
        pytest.param("Token x", id="unknown-scheme"),
        pytest.param("Basic !!!notbase64", id="basic-not-base64"),
        pytest.param(
            "Basic " + base64.b64encode(b"no-colon-anywhere").decode(), id="basic-without-colon"
        ),
        pytest.param(
            "Basic " + base64.b64encode(b"alice:").decode(), id="basic-with-empty-password"
        ),
    ],
)
async def test_a_malformed_authorization_header_is_401_and_writes_nothing(
    authorization: str, database: Database, database_url: str, tmp_path: Path
) -> None:
    await add_user(database, "alice")
    before = await contents(database)

    async with serving(database_url, tmp_path) as served:
        response = await served.graphql(VIEWER, authorization=authorization)

    assert_unauthenticated(response)
    assert await contents(database) == before


async def test_basic_with_a_wrong_password_is_401_and_writes_nothing(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    _, _, secret = await add_user(database, "alice")
    before = await contents(database)

    async with serving(database_url, tmp_path) as served:
        wrong = await served.graphql(VIEWER, authorization=basic("alice", secret[:-1] + "!"))

    assert_unauthenticated(wrong)
    assert await contents(database) == before


async def test_the_token_of_a_blocked_user_is_401_once_cached_verdicts_are_forgotten(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    user, _, secret = await add_user(database, "alice")

    async with serving(database_url, tmp_path) as served:
        assert viewer_name(await served.graphql(VIEWER, token=secret)) == "alice"
        async with database.session() as session:
            await session.execute(sa.update(User).where(User.id == user.id).values(is_active=False))
        auth.forget_cached_tokens()
        before = await contents(database)
        response = await served.graphql(VIEWER, token=secret)
        after = await contents(database)

    assert_unauthenticated(response)
    assert "blocked" in response.json()["errors"][0]["message"]
    assert after == before


# --- scopes ----------------------------------------------------------------------------

# Every mutation, each with inputs an administrator with an `api` token may use.
MUTATIONS = [
    pytest.param('mutation { userCreate(input: {username: "carol"}) { %s } }', id="userCreate"),
    pytest.param('mutation { projectCreate(input: {path: "fresh"}) { %s } }', id="projectCreate"),
    pytest.param(
        'mutation { projectUpdate(input: {path: "team", name: "Renamed"}) { %s } }',
        id="projectUpdate",
    ),
    pytest.param(
        'mutation { memberSet(input: {project: "team", username: "bob", role: DEVELOPER}) { %s } }',
        id="memberSet",
    ),
    pytest.param(
        'mutation { memberRemove(input: {project: "team", username: "bob"}) { %s } }',
        id="memberRemove",
    ),
    pytest.param('mutation { tokenCreate(input: {name: "more"}) { %s } }', id="tokenCreate"),
    pytest.param("mutation($id: Int!) { tokenRevoke(id: $id) { %s } }", id="tokenRevoke"),
]


@pytest.mark.parametrize("mutation", MUTATIONS)
async def test_a_read_api_token_can_query_but_every_mutation_is_forbidden_and_writes_nothing(
    mutation: str, database: Database, database_url: str, tmp_path: Path
) -> None:
    # An administrator who owns the project: only the token's scope can stop them.
    admin, _, _ = await add_user(database, "root", is_admin=True)
    token, secret = await add_token(database, admin, scopes=(SCOPE_READ_API,))
    bob, _, _ = await add_user(database, "bob")
    await add_project(database, "team", admin)
    await add_member(database, "team", bob, Role.REPORTER)
    variables = {"id": token.id} if "$id" in mutation else None

    async with serving(database_url, tmp_path) as served:
        read = await served.data(
            '{ viewer { user { username isAdmin } } project(path: "team") { path } }',
            token=secret,
        )
        # The first use records last_used_at; everything after must change nothing.
        before = await contents(database)
        result = await served.data(mutation % ERROR_FIELDS, variables, token=secret)
        after = await contents(database)

    assert read == {
        "viewer": {"user": {"username": "root", "isAdmin": True}},
        "project": {"path": "team"},
    }
    [outcome] = result.values()
    assert outcome["__typename"] == "PermissionError", outcome
    assert outcome["code"] == "FORBIDDEN"
    assert "read_api" in outcome["message"]
    assert after == before


# --- how tokens are stored ---------------------------------------------------------------


async def test_a_token_secret_has_the_mrpat_prefix_and_is_stored_only_as_its_sha256_digest(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    _, token, secret = await add_user(database, "alice")

    async with serving(database_url, tmp_path) as served:
        created = await served.data(
            'mutation { tokenCreate(input: {name: "ci"}) {'
            f" {ERROR_FIELDS} ... on CreatedAccessToken {{ secret token {{ id }} }} }} }}",
            token=secret,
        )
    second_secret = created["tokenCreate"]["secret"]
    second_id = created["tokenCreate"]["token"]["id"]

    async with database.session(read_only=True) as session:
        rows = {
            row.id: row for row in (await session.execute(sa.select(AccessToken.__table__))).all()
        }
    for token_id, row_secret in ((token.id, secret), (second_id, second_secret)):
        assert row_secret.startswith("mrpat-")
        row = rows[token_id]
        assert row.digest == hashlib.sha256(row_secret.encode()).hexdigest()
        every_value = " ".join(str(value) for value in row)
        assert row_secret not in every_value
        assert row_secret.removeprefix("mrpat-") not in every_value


async def test_last_used_at_is_set_on_first_use_and_not_rewritten_within_a_minute(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    _, token, secret = await add_user(database, "alice")
    assert (await token_row(database, token.id)).last_used_at is None

    async with serving(database_url, tmp_path) as served:
        started = utcnow()
        assert viewer_name(await served.graphql(VIEWER, token=secret)) == "alice"
        first = (await token_row(database, token.id)).last_used_at
        auth.forget_cached_tokens()  # the next request looks the token up again
        assert viewer_name(await served.graphql(VIEWER, token=secret)) == "alice"
        second = (await token_row(database, token.id)).last_used_at

    assert first is not None
    assert started - dt.timedelta(seconds=1) <= first <= utcnow()
    assert second == first


# --- managing tokens through GraphQL --------------------------------------------------------

TOKEN_CREATE = (
    "mutation($input: TokenCreateInput!) { tokenCreate(input: $input) {"
    f" {ERROR_FIELDS} ... on CreatedAccessToken {{ secret token {{ id name scopes expiresAt }} }}"
    " } }"
)
TOKEN_REVOKE = (
    "mutation($id: Int!) { tokenRevoke(id: $id) {"
    f" {ERROR_FIELDS} ... on AccessToken {{ id revokedAt }} }} }}"
)


async def test_token_create_for_yourself_returns_the_secret_once_and_lists_the_token_without_it(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    _, token, secret = await add_user(database, "alice")
    expires = (utcnow() + dt.timedelta(days=3)).replace(microsecond=0)

    async with serving(database_url, tmp_path) as served:
        created = (
            await served.data(
                TOKEN_CREATE,
                {
                    "input": {
                        "name": "ci",
                        "scopes": [SCOPE_READ_API],
                        "expiresAt": expires.isoformat(),
                    }
                },
                token=secret,
            )
        )["tokenCreate"]
        new_secret = created["secret"]
        as_new = await served.graphql(VIEWER, token=new_secret)
        listing = await served.graphql(
            "{ viewer { tokens { id name scopes expiresAt revokedAt } } }", token=secret
        )
        fields = await served.data('{ __type(name: "AccessToken") { fields { name } } }')

    assert created["__typename"] == "CreatedAccessToken"
    assert created["token"]["name"] == "ci"
    assert created["token"]["scopes"] == [SCOPE_READ_API]
    assert dt.datetime.fromisoformat(created["token"]["expiresAt"]) == expires
    assert viewer_name(as_new) == "alice"
    tokens = listing.json()["data"]["viewer"]["tokens"]
    assert [(t["id"], t["name"]) for t in tokens] == [
        (token.id, "alice-token"),
        (created["token"]["id"], "ci"),
    ]
    assert new_secret not in listing.text
    assert secret not in listing.text
    field_names = {field["name"] for field in fields["__type"]["fields"]}
    assert "secret" not in field_names
    assert "digest" not in field_names


async def test_token_create_for_another_user_is_forbidden_unless_the_caller_is_an_admin(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    _, _, alice_secret = await add_user(database, "alice")
    _, _, admin_secret = await add_user(database, "root", is_admin=True)
    await add_user(database, "bob")
    for_bob = {"input": {"name": "for-bob", "username": "bob"}}

    async with serving(database_url, tmp_path) as served:
        await served.data(VIEWER, token=alice_secret)  # the first use sets last_used_at
        before = await contents(database)
        by_alice = (await served.data(TOKEN_CREATE, for_bob, token=alice_secret))["tokenCreate"]
        after_alice = await contents(database)
        by_admin = (await served.data(TOKEN_CREATE, for_bob, token=admin_secret))["tokenCreate"]
        as_bob = await served.graphql(VIEWER, token=by_admin["secret"])

    assert by_alice["__typename"] == "PermissionError"
    assert by_alice["code"] == "FORBIDDEN"
    assert after_alice == before
    assert by_admin["__typename"] == "CreatedAccessToken"
    assert viewer_name(as_bob) == "bob"


async def test_token_revoke_of_another_users_token_is_not_found_for_non_admins(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    _, _, alice_secret = await add_user(database, "alice")
    _, bob_token, bob_secret = await add_user(database, "bob")
    _, _, admin_secret = await add_user(database, "root", is_admin=True)

    async with serving(database_url, tmp_path) as served:
        await served.data(VIEWER, token=alice_secret)  # the first use sets last_used_at
        before = await contents(database)
        by_alice = (await served.data(TOKEN_REVOKE, {"id": bob_token.id}, token=alice_secret))[
            "tokenRevoke"
        ]
        after_alice = await contents(database)
        bob_still = await served.graphql(VIEWER, token=bob_secret)
        by_admin = (await served.data(TOKEN_REVOKE, {"id": bob_token.id}, token=admin_secret))[
            "tokenRevoke"
        ]
        bob_after = await served.graphql(VIEWER, token=bob_secret)

    assert by_alice["__typename"] == "NotFoundError"
    assert by_alice["field"] == "id"
    assert after_alice == before
    assert viewer_name(bob_still) == "bob"
    assert by_admin["__typename"] == "AccessToken"
    assert_unauthenticated(bob_after)


@pytest.mark.parametrize(
    ("token_input", "field"),
    [
        pytest.param({"name": "x", "scopes": ["write"]}, "scopes", id="unknown-scope"),
        pytest.param({"name": "x", "scopes": []}, "scopes", id="no-scope"),
        pytest.param(
            {"name": "x", "expiresAt": "2020-01-01T00:00:00+00:00"}, "expiresAt", id="past-expiry"
        ),
        pytest.param(
            {"name": "x", "expiresAt": "2099-01-01T00:00:00"}, "expiresAt", id="expiry-sans-offset"
        ),
    ],
)
async def test_token_create_with_bad_scopes_or_a_past_or_offsetless_expiry_is_a_validation_error(
    token_input: dict[str, Any],
    field: str,
    database: Database,
    database_url: str,
    tmp_path: Path,
) -> None:
    _, _, secret = await add_user(database, "alice")

    async with serving(database_url, tmp_path) as served:
        await served.data(VIEWER, token=secret)
        before = await contents(database)
        result = (await served.data(TOKEN_CREATE, {"input": token_input}, token=secret))[
            "tokenCreate"
        ]
        after = await contents(database)

    assert result["__typename"] == "ValidationError", result
    assert result["field"] == field
    assert after == before


# --- the audit trail ---------------------------------------------------------------------


async def test_each_change_records_one_audit_event_with_actor_token_project_and_action(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    admin, admin_token, secret = await add_user(database, "root", is_admin=True)
    async with database.session(read_only=True) as session:
        seen = int(await session.scalar(sa.select(sa.func.max(AuditEvent.id))) or 0)

    async def new_events() -> list[AuditEvent]:
        nonlocal seen
        async with database.session(read_only=True) as session:
            rows = list(
                await session.scalars(
                    sa.select(AuditEvent).where(AuditEvent.id > seen).order_by(AuditEvent.id)
                )
            )
        if rows:
            seen = rows[-1].id
        return rows

    async with serving(database_url, tmp_path) as served:
        user = await served.data(
            f'mutation {{ userCreate(input: {{username: "bob"}}) {{ {ERROR_FIELDS} }} }}',
            token=secret,
        )
        user_events = await new_events()
        project = await served.data(
            f'mutation {{ projectCreate(input: {{path: "team"}}) {{ {ERROR_FIELDS} }} }}',
            token=secret,
        )
        project_events = await new_events()
        member = await served.data(
            'mutation { memberSet(input: {project: "team", username: "bob",'
            f" role: DEVELOPER}}) {{ {ERROR_FIELDS} }} }}",
            token=secret,
        )
        member_events = await new_events()
        created = await served.data(TOKEN_CREATE, {"input": {"name": "more"}}, token=secret)
        create_events = await new_events()
        new_id = created["tokenCreate"]["token"]["id"]
        revoked = await served.data(TOKEN_REVOKE, {"id": new_id}, token=secret)
        revoke_events = await new_events()

    assert user["userCreate"]["__typename"] == "User"
    assert project["projectCreate"]["__typename"] == "Project"
    assert member["memberSet"]["__typename"] == "Member"
    assert created["tokenCreate"]["__typename"] == "CreatedAccessToken"
    assert revoked["tokenRevoke"]["__typename"] == "AccessToken"

    async with database.session(read_only=True) as session:
        bob = await users.get_user(session, username="bob")
        team = await projects.get_project(session, path="team")
        membership_id = await session.scalar(
            sa.select(Membership.id).where(
                Membership.project_id == team.id, Membership.user_id == bob.id
            )
        )

    expected = [
        (user_events, "user.create", None, "users", bob.id),
        (project_events, "project.create", team.id, "projects", team.id),
        (member_events, "member.add", team.id, "memberships", membership_id),
        (create_events, "token.create", None, "access_tokens", new_id),
        (revoke_events, "token.revoke", None, "access_tokens", new_id),
    ]
    for events, action, project_id, target_type, target_id in expected:
        assert len(events) == 1, (action, [event.action for event in events])
        [recorded] = events
        assert (
            recorded.action,
            recorded.actor_id,
            recorded.token_id,
            recorded.project_id,
            recorded.target_type,
            recorded.target_id,
        ) == (action, admin.id, admin_token.id, project_id, target_type, target_id)


# --- member rules ------------------------------------------------------------------------

MEMBER_SET = (
    "mutation($project: String!, $username: String!, $role: Role!) {"
    " memberSet(input: {project: $project, username: $username, role: $role}) {"
    f" {ERROR_FIELDS} ... on Member {{ user {{ username }} role }} }} }}"
)
MEMBER_REMOVE = (
    "mutation($project: String!, $username: String!) {"
    " memberRemove(input: {project: $project, username: $username}) {"
    f" {ERROR_FIELDS} ... on MemberRemoved {{ username }} }} }}"
)
MEMBERS = '{ project(path: "team") { members { user { username } role } } }'


@dataclass
class Team:
    owner: str
    maintainer: str


@pytest.fixture
async def team(database: Database) -> Team:
    """Project `team`: olivia owns it, mark maintains it, erin is no member."""
    olivia, _, owner_secret = await add_user(database, "olivia")
    mark, _, maintainer_secret = await add_user(database, "mark")
    await add_user(database, "erin")
    await add_project(database, "team", olivia)
    await add_member(database, "team", mark, Role.MAINTAINER)
    return Team(owner=owner_secret, maintainer=maintainer_secret)


def member_roles(data: dict[str, Any]) -> dict[str, str]:
    return {m["user"]["username"]: m["role"] for m in data["project"]["members"]}


async def test_a_maintainer_can_add_a_developer_but_not_make_an_owner(
    team: Team, database: Database, database_url: str, tmp_path: Path
) -> None:
    async with serving(database_url, tmp_path) as served:
        added = await served.data(
            MEMBER_SET,
            {"project": "team", "username": "erin", "role": "DEVELOPER"},
            token=team.maintainer,
        )
        before = await contents(database)
        promoted = await served.data(
            MEMBER_SET,
            {"project": "team", "username": "erin", "role": "OWNER"},
            token=team.maintainer,
        )
        self_promoted = await served.data(
            MEMBER_SET,
            {"project": "team", "username": "mark", "role": "OWNER"},
            token=team.maintainer,
        )
        after = await contents(database)
        members = await served.data(MEMBERS, token=team.owner)

    assert added["memberSet"] == {
        "__typename": "Member",
        "user": {"username": "erin"},
        "role": "DEVELOPER",
    }
    for result in (promoted["memberSet"], self_promoted["memberSet"]):
        assert result["__typename"] == "PermissionError", result
        assert result["code"] == "FORBIDDEN"
        assert result["field"] == "role"
    assert after == before
    assert member_roles(members) == {"olivia": "OWNER", "mark": "MAINTAINER", "erin": "DEVELOPER"}


async def test_the_last_owner_can_be_neither_demoted_nor_removed(
    team: Team, database: Database, database_url: str, tmp_path: Path
) -> None:
    async with serving(database_url, tmp_path) as served:
        await served.data(VIEWER, token=team.owner)
        before = await contents(database)
        demoted = await served.data(
            MEMBER_SET,
            {"project": "team", "username": "olivia", "role": "MAINTAINER"},
            token=team.owner,
        )
        removed = await served.data(
            MEMBER_REMOVE, {"project": "team", "username": "olivia"}, token=team.owner
        )
        after = await contents(database)

    for result in (demoted["memberSet"], removed["memberRemove"]):
        assert result["__typename"] == "ValidationError", result
        assert result["field"] == "role"
    assert after == before


async def test_an_owner_can_make_another_owner_who_may_then_demote_the_first(
    team: Team, database: Database, database_url: str, tmp_path: Path
) -> None:
    async with serving(database_url, tmp_path) as served:
        promoted = await served.data(
            MEMBER_SET, {"project": "team", "username": "mark", "role": "OWNER"}, token=team.owner
        )
        demoted = await served.data(
            MEMBER_SET,
            {"project": "team", "username": "olivia", "role": "DEVELOPER"},
            token=team.maintainer,
        )
        members = await served.data(MEMBERS, token=team.maintainer)

    assert promoted["memberSet"]["__typename"] == "Member", promoted
    assert promoted["memberSet"]["role"] == "OWNER"
    assert demoted["memberSet"]["__typename"] == "Member", demoted
    assert member_roles(members) == {"olivia": "DEVELOPER", "mark": "OWNER"}


# --- the cost of a token check ---------------------------------------------------------------


async def test_authenticating_the_same_token_50_times_looks_it_up_in_the_database_once(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    _, _, secret = await add_user(database, "alice")
    async with serving(database_url, tmp_path) as served:
        with recorded() as statements:
            responses = [await served.graphql("{ version }", token=secret) for _ in range(50)]

    assert all(response.status_code == 200 for response in responses)
    token_lookups = [
        s for s in statements if "access_tokens" in s and s.lstrip().upper().startswith("SELECT")
    ]
    assert len(token_lookups) == 1, token_lookups
