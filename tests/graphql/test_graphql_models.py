"""Models, versions, candidates and jobs over GraphQL with real Bearer tokens: lookups by
global id, the project's model list, every field of a model, and every mutation with its
errors, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from app.models import Model, ModelVersion, Role
from app.services import candidates, models, projects, versions
from app.services.actor import OPERATOR
from tests.graphql_support import ERROR_FIELDS, GraphQLApi, edges_of, graphql_api, typename

DAY = dt.timedelta(days=1)
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

JOB_STARTED = f"{ERROR_FIELDS} ... on JobStarted {{ job {{ id kind status }} }}"
MODEL_RESULT = (
    f"{ERROR_FIELDS} ... on Model {{ id iid name displayName description"
    " metadata { name value } author { username } project { path }"
    " versionCount candidateCount latestVersion { version } updatedAt }"
)
VERSION_RESULT = (
    f"{ERROR_FIELDS} ... on ModelVersion {{ id number version description descriptionHtml"
    " stage aliases metadata { name value } updatedAt model { id name }"
    " candidate { id name status version { id } } }"
)
CANDIDATE_RESULT = (
    f"{ERROR_FIELDS} ... on Candidate {{ id iid eid name status startTime endTime deleted"
    " params { name value } metadata { name value } model { id }"
    " author { username } version { id }"
    " metrics { name value kind step timestamp } }"
)
NODE = """
  __typename id
  ... on Model { name }
  ... on ModelVersion { version }
  ... on Candidate { name }
  ... on Job { kind }
"""


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[GraphQLApi]:
    async with graphql_api(database_url, tmp_path) as served:
        yield served


async def mutate(
    api: GraphQLApi,
    name: str,
    arguments: dict[str, Any],
    selection: str,
    *,
    token: str | None = None,
) -> dict[str, Any]:
    """Run one mutation, whose input type is `<Name>Input`; returns its result."""
    input_type = name[0].upper() + name[1:] + "Input"
    found = await api.data(
        f"mutation($input: {input_type}!) {{ {name}(input: $input) {{ {selection} }} }}",
        {"input": arguments},
        token=token,
    )
    result: dict[str, Any] = found[name]
    return result


async def by_id(
    api: GraphQLApi, field_name: str, node_id: str, selection: str, *, token: str | None = None
) -> dict[str, Any] | None:
    found = await api.data(
        f"query($id: ID!) {{ {field_name}(id: $id) {{ {selection} }} }}",
        {"id": node_id},
        token=token,
    )
    result: dict[str, Any] | None = found[field_name]
    return result


async def model_by_id(api: GraphQLApi, model_id: str, selection: str) -> dict[str, Any]:
    model = await by_id(api, "model", model_id, selection)
    assert model is not None
    return model


async def create_model(api: GraphQLApi, display_name: str, **extra: Any) -> dict[str, Any]:
    model = await mutate(
        api,
        "modelCreate",
        {"project": api.project_path, "displayName": display_name, **extra},
        MODEL_RESULT,
    )
    assert typename(model) == "Model", model
    return model


async def create_version(api: GraphQLApi, model_id: str, **extra: Any) -> dict[str, Any]:
    version = await mutate(
        api, "modelVersionCreate", {"modelId": model_id, **extra}, VERSION_RESULT
    )
    assert typename(version) == "ModelVersion", version
    return version


async def create_candidate(api: GraphQLApi, model_id: str, **extra: Any) -> dict[str, Any]:
    candidate = await mutate(
        api, "candidateCreate", {"modelId": model_id, **extra}, CANDIDATE_RESULT
    )
    assert typename(candidate) == "Candidate", candidate
    return candidate


async def finished_job(api: GraphQLApi, started: dict[str, Any], kind: str) -> dict[str, Any]:
    """The job a mutation started, once the in-process runner finished it."""
    assert typename(started) == "JobStarted", started
    assert started["job"]["kind"] == kind
    assert started["job"]["status"] in ("PENDING", "RUNNING", "SUCCEEDED")
    job = await api.wait_for_job(started["job"]["id"])
    assert job["status"] == "SUCCEEDED", job
    return job


def kv(**entries: str) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in entries.items()]


def by_name(entries: list[dict[str, str]]) -> dict[str, str]:
    return {entry["name"]: entry["value"] for entry in entries}


def hrefs(html: str) -> list[str]:
    return re.findall(r"""href\s*=\s*["']?([^"'\s>]+)""", html)


# --- the schema ---------------------------------------------------------------------------


async def test_enums_are_spelled_by_member_name(api: GraphQLApi) -> None:
    names = {}
    for enum_name in ("JobStatus", "CandidateStatus", "VersionStage", "MetricValueKind"):
        found = await api.data(
            "query($name: String!) { __type(name: $name) { enumValues { name } } }",
            {"name": enum_name},
        )
        assert found["__type"] is not None, enum_name
        names[enum_name] = [value["name"] for value in found["__type"]["enumValues"]]

    assert names == {
        "JobStatus": ["PENDING", "RUNNING", "SUCCEEDED", "FAILED"],
        "CandidateStatus": ["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"],
        "VersionStage": ["NONE", "STAGING", "PRODUCTION", "ARCHIVED"],
        "MetricValueKind": ["FINITE", "NAN", "POSITIVE_INFINITY", "NEGATIVE_INFINITY"],
    }


# --- lookups by global id -----------------------------------------------------------------


async def build_world(api: GraphQLApi) -> dict[str, str]:
    """A model with a version and a plain candidate, and the job of a deleted model; the
    global ids of each, as the API gave them."""
    model = await create_model(api, "Churn")
    version = await create_version(api, model["id"])
    candidate = await create_candidate(api, model["id"], name="plain")
    doomed = await create_model(api, "Doomed")
    started = await mutate(api, "modelDelete", {"id": doomed["id"]}, JOB_STARTED)
    job = await finished_job(api, started, "delete_model")
    return {
        "model": model["id"],
        "version": version["id"],
        "version_candidate": version["candidate"]["id"],
        "candidate": candidate["id"],
        "job": job["id"],
        "deleted_model": doomed["id"],
    }


async def test_every_kind_of_node_is_found_by_its_global_id(api: GraphQLApi) -> None:
    ids = await build_world(api)

    model = await by_id(api, "model", ids["model"], "id name")
    version = await by_id(api, "modelVersion", ids["version"], "id version model { id }")
    candidate = await by_id(api, "candidate", ids["candidate"], "id name model { id }")
    job = await by_id(api, "job", ids["job"], "id kind status")
    nodes = await api.data(
        f"query($ids: [ID!]!) {{ nodes(ids: $ids) {{ {NODE} }} }}",
        {"ids": [ids["job"], ids["candidate"], ids["model"], ids["version"]]},
    )
    single = {
        kind: await by_id(api, "node", ids[kind], NODE)
        for kind in ("model", "version", "candidate", "job")
    }

    assert model == {"id": ids["model"], "name": "churn"}
    assert version == {"id": ids["version"], "version": "1.0.0", "model": {"id": ids["model"]}}
    assert candidate == {"id": ids["candidate"], "name": "plain", "model": {"id": ids["model"]}}
    assert job == {"id": ids["job"], "kind": "delete_model", "status": "SUCCEEDED"}
    assert nodes["nodes"] == [
        {"__typename": "Job", "id": ids["job"], "kind": "delete_model"},
        {"__typename": "Candidate", "id": ids["candidate"], "name": "plain"},
        {"__typename": "Model", "id": ids["model"], "name": "churn"},
        {"__typename": "ModelVersion", "id": ids["version"], "version": "1.0.0"},
    ]
    assert single == {
        "model": nodes["nodes"][2],
        "version": nodes["nodes"][3],
        "candidate": nodes["nodes"][1],
        "job": nodes["nodes"][0],
    }
    assert len(set(ids.values())) == len(ids)


async def test_missing_or_unreadable_ids_are_null(api: GraphQLApi) -> None:
    ids = await build_world(api)
    outsider = await api.add_user("outsider")
    reporter = await api.add_user("reporter", role=Role.REPORTER)
    fields = {
        "model": "model",
        "version": "modelVersion",
        "candidate": "candidate",
        "job": "job",
    }

    hidden = {
        kind: await by_id(api, field_name, ids[kind], "id", token=outsider)
        for kind, field_name in fields.items()
    }
    hidden_nodes = {
        kind: await by_id(api, "node", ids[kind], "id", token=outsider) for kind in fields
    }
    hidden_list = await api.data(
        "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
        {"ids": [ids[kind] for kind in fields]},
        token=outsider,
    )
    seen_by_reporter = {
        kind: await by_id(api, field_name, ids[kind], "id", token=reporter)
        for kind, field_name in fields.items()
    }
    deleted = await by_id(api, "model", ids["deleted_model"], "id")
    deleted_node = await api.data(
        "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
        {"ids": [ids["deleted_model"], ids["model"]]},
    )

    assert hidden == dict.fromkeys(fields)
    assert hidden_nodes == dict.fromkeys(fields)
    assert hidden_list == {"nodes": [None, None, None, None]}
    assert seen_by_reporter == {kind: {"id": ids[kind]} for kind in fields}
    assert deleted is None
    assert deleted_node == {"nodes": [None, {"id": ids["model"]}]}


async def test_destroyed_versions_and_candidates_are_null_by_id(api: GraphQLApi) -> None:
    ids = await build_world(api)

    version_job = await mutate(api, "modelVersionDelete", {"id": ids["version"]}, JOB_STARTED)
    candidate_job = await mutate(api, "candidateDelete", {"id": ids["candidate"]}, JOB_STARTED)
    version_at_once = await by_id(api, "modelVersion", ids["version"], "id")
    candidate_at_once = await by_id(api, "candidate", ids["candidate"], "id")
    await finished_job(api, version_job, "delete_version")
    await finished_job(api, candidate_job, "delete_candidate")

    assert version_at_once is None
    assert candidate_at_once is None
    assert await by_id(api, "modelVersion", ids["version"], "id") is None
    assert await by_id(api, "candidate", ids["candidate"], "id") is None
    assert await by_id(api, "node", ids["candidate"], "id") is None


async def test_a_malformed_global_id_is_a_validation_error(api: GraphQLApi) -> None:
    bad_ids = ["not-a-global-id", "%%%", "TW9kZWw6YWJj"]
    fields = ("model", "modelVersion", "candidate", "job", "node")

    codes = {}
    for bad_id in bad_ids:
        for field_name in fields:
            found = await api.errors(
                f"query($id: ID!) {{ {field_name}(id: $id) {{ id }} }}", {"id": bad_id}
            )
            codes[bad_id, field_name] = [error.get("extensions", {}).get("code") for error in found]
        listed = await api.errors(
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": [bad_id]}
        )
        codes[bad_id, "nodes"] = [error.get("extensions", {}).get("code") for error in listed]

    assert codes == {
        (bad_id, field_name): ["VALIDATION_ERROR"]
        for bad_id in bad_ids
        for field_name in (*fields, "nodes")
    }


# --- the project's models -----------------------------------------------------------------

PROJECT_MODELS = """
query($path: String!, $search: String, $orderBy: ModelOrder, $first: Int, $after: String,
      $last: Int, $before: String) {
  project(path: $path) {
    models(search: $search, orderBy: $orderBy, first: $first, after: $after, last: $last,
           before: $before) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor node { name displayName } }
    }
  }
}
"""


async def project_models(api: GraphQLApi, **arguments: Any) -> dict[str, Any]:
    variables = {"path": api.project_path}
    variables.update({name: value for name, value in arguments.items() if value is not None})
    found = await api.data(PROJECT_MODELS, variables)
    result: dict[str, Any] = found["project"]["models"]
    return result


async def model_names(api: GraphQLApi, **arguments: Any) -> list[str]:
    return [node["name"] for node in edges_of(await project_models(api, **arguments))]


async def seed_ranked_models(api: GraphQLApi) -> None:
    """Three `ranked-*` models whose orders by name, creation, change and newest version
    all differ, and one found only by its display name."""
    plan = {
        # slug: (created, updated, days its versions were made)
        "ranked-a": (3, 1, [2, 3]),
        "ranked-b": (1, 3, [1]),
        "ranked-c": (2, 2, [4, 5, 6]),
    }
    async with api.database.session() as session:
        project = await projects.get_project(session, path=api.project_path)
        for slug, (created, updated, version_days) in plan.items():
            model = await models.create_model(
                session,
                project=project,
                display_name=f"Ranked {slug[-1].upper()}",
                name=slug,
                actor=OPERATOR,
            )
            for day in version_days:
                version = await versions.create_version(session, model=model, actor=OPERATOR)
                await session.execute(
                    sa.update(ModelVersion)
                    .where(ModelVersion.id == version.id)
                    .values(created_at=EPOCH + day * DAY)
                )
            await session.execute(
                sa.update(Model)
                .where(Model.id == model.id)
                .values(created_at=EPOCH + created * DAY, updated_at=EPOCH + updated * DAY)
            )
        await models.create_model(
            session, project=project, display_name="Also RANKED", name="w-model", actor=OPERATOR
        )


async def test_project_models_search_by_name_or_display_name_ignoring_case(
    api: GraphQLApi,
) -> None:
    await seed_ranked_models(api)

    everything = await project_models(api)
    ranked = await model_names(api, search="RANKED")
    by_slug = await model_names(api, search="ranked-")
    one = await model_names(api, search="Ranked B")
    none = await project_models(api, search="no-such-model")

    assert [node["name"] for node in edges_of(everything)] == [
        "default",
        "ranked-a",
        "ranked-b",
        "ranked-c",
        "w-model",
    ]
    assert everything["totalCount"] == 5
    assert ranked == ["ranked-a", "ranked-b", "ranked-c", "w-model"]
    assert by_slug == ["ranked-a", "ranked-b", "ranked-c"]
    assert one == ["ranked-b"]
    assert none["edges"] == []
    assert none["totalCount"] == 0


async def test_project_models_order_by_each_field_in_both_directions(api: GraphQLApi) -> None:
    await seed_ranked_models(api)
    ascending = {
        "NAME": ["ranked-a", "ranked-b", "ranked-c"],
        "CREATED_AT": ["ranked-b", "ranked-c", "ranked-a"],
        "UPDATED_AT": ["ranked-a", "ranked-c", "ranked-b"],
        "LATEST_VERSION": ["ranked-b", "ranked-a", "ranked-c"],
    }

    orders = {}
    for field_name in ascending:
        for direction in ("ASC", "DESC"):
            orders[field_name, direction] = await model_names(
                api, search="ranked-", orderBy={"field": field_name, "direction": direction}
            )

    assert orders == {
        **{(field_name, "ASC"): names for field_name, names in ascending.items()},
        **{(field_name, "DESC"): names[::-1] for field_name, names in ascending.items()},
    }


async def test_project_models_page_forwards_and_backwards(api: GraphQLApi) -> None:
    await seed_ranked_models(api)
    by_name = {"field": "NAME", "direction": "ASC"}

    first = await project_models(api, search="ranked-", orderBy=by_name, first=2)
    second = await project_models(
        api, search="ranked-", orderBy=by_name, first=2, after=first["pageInfo"]["endCursor"]
    )
    last = await project_models(api, search="ranked-", orderBy=by_name, last=2)
    before = await project_models(
        api, search="ranked-", orderBy=by_name, last=2, before=last["pageInfo"]["startCursor"]
    )
    default_order = await model_names(api, search="ranked-")

    assert [node["name"] for node in edges_of(first)] == ["ranked-a", "ranked-b"]
    assert first["pageInfo"]["hasNextPage"] is True
    assert first["pageInfo"]["hasPreviousPage"] is False
    assert first["totalCount"] == 3
    assert [node["name"] for node in edges_of(second)] == ["ranked-c"]
    assert second["pageInfo"]["hasNextPage"] is False
    assert [node["name"] for node in edges_of(last)] == ["ranked-b", "ranked-c"]
    assert last["pageInfo"]["hasPreviousPage"] is True
    assert [node["name"] for node in edges_of(before)] == ["ranked-a"]
    assert before["pageInfo"]["hasPreviousPage"] is False
    assert default_order == ["ranked-a", "ranked-b", "ranked-c"]

    garbage = await api.refusal(
        PROJECT_MODELS, {"path": api.project_path, "first": 2, "after": "garbage"}
    )
    too_many = await api.refusal(PROJECT_MODELS, {"path": api.project_path, "first": 1001})
    assert garbage == (["VALIDATION_ERROR"], "after")
    assert too_many == (["VALIDATION_ERROR"], "first")


async def test_project_model_by_name(api: GraphQLApi) -> None:
    await seed_ranked_models(api)

    found = await api.data(
        "query($path: String!) { project(path: $path) {"
        ' b: model(name: "ranked-b") { name displayName versionCount }'
        ' missing: model(name: "nope") { name }'
        ' byDisplayName: model(name: "Ranked B") { name } } }',
        {"path": api.project_path},
    )

    assert found["project"] == {
        "b": {"name": "ranked-b", "displayName": "Ranked B", "versionCount": 1},
        "missing": None,
        "byDisplayName": None,
    }


# --- a model's fields ---------------------------------------------------------------------

DESCRIPTION = (
    "# Churn\n\n"
    "Predicts **churn** weekly.\n\n"
    "<script>alert('x')</script>\n\n"
    "[docs](https://example.com/docs) and [bad](javascript:alert(1))\n"
)


async def test_model_fields_versions_counts_and_aliases(api: GraphQLApi) -> None:
    async with api.database.session() as session:
        project = await projects.get_project(session, path=api.project_path)
        model = await models.create_model(
            session,
            project=project,
            display_name="Churn Predictor",
            name="churn",
            description=DESCRIPTION,
            metadata={"tier": "gold", "team": "ml"},
            actor=OPERATOR,
        )
        await candidates.create_candidate(session, model=model, name="plain", actor=OPERATOR)
        promoted = await candidates.create_candidate(
            session, model=model, name="promoted", actor=OPERATOR
        )
        v1 = await versions.create_version(session, model=model, candidate=promoted, actor=OPERATOR)
        v2 = await versions.create_version(session, model=model, actor=OPERATOR)
        v3 = await versions.create_version(session, model=model, version="2.1.0", actor=OPERATOR)
        await versions.set_alias(session, model=model, alias="champion", version=v1, actor=OPERATOR)
        await versions.set_alias(
            session, model=model, alias="challenger", version=v3, actor=OPERATOR
        )
        for row, day in ((v1, 3), (v2, 1), (v3, 2)):
            await session.execute(
                sa.update(ModelVersion)
                .where(ModelVersion.id == row.id)
                .values(created_at=EPOCH + day * DAY)
            )
    model_id = await api.model_id("churn")

    found = await model_by_id(
        api,
        model_id,
        """
        id iid name displayName description descriptionHtml registered
        metadata { name value } project { path }
        latestVersion { number version }
        byVersion: version(version: "2.0.0") { number version candidate { name } }
        noVersion: version(version: "9.9.9") { number }
        versionCount candidateCount
        aliases { alias version { version } }
        numberDesc: versions { totalCount edges { node { version } } }
        numberAsc: versions(orderBy: {field: NUMBER, direction: ASC}) {
          edges { node { number } }
        }
        createdDesc: versions(orderBy: {field: CREATED_AT, direction: DESC}) {
          edges { node { version } }
        }
        createdAsc: versions(orderBy: {field: CREATED_AT, direction: ASC}) {
          edges { node { version } }
        }
        firstTwo: versions(first: 2) {
          totalCount pageInfo { hasNextPage } edges { node { version aliases } }
        }
        """,
    )

    html = found.pop("descriptionHtml")
    metadata = found.pop("metadata")
    aliases = found.pop("aliases")
    assert found == {
        "id": model_id,
        "iid": 1,
        "name": "churn",
        "displayName": "Churn Predictor",
        "description": DESCRIPTION,
        "registered": True,
        "project": {"path": api.project_path},
        "latestVersion": {"number": 3, "version": "2.1.0"},
        "byVersion": {"number": 2, "version": "2.0.0", "candidate": {"name": "version-2.0.0"}},
        "noVersion": None,
        "versionCount": 3,
        "candidateCount": 4,
        "numberDesc": {
            "totalCount": 3,
            "edges": [{"node": {"version": v}} for v in ("2.1.0", "2.0.0", "1.0.0")],
        },
        "numberAsc": {"edges": [{"node": {"number": n}} for n in (1, 2, 3)]},
        "createdDesc": {"edges": [{"node": {"version": v}} for v in ("1.0.0", "2.1.0", "2.0.0")]},
        "createdAsc": {"edges": [{"node": {"version": v}} for v in ("2.0.0", "2.1.0", "1.0.0")]},
        "firstTwo": {
            "totalCount": 3,
            "pageInfo": {"hasNextPage": True},
            "edges": [
                {"node": {"version": "2.1.0", "aliases": ["challenger"]}},
                {"node": {"version": "2.0.0", "aliases": []}},
            ],
        },
    }
    assert by_name(metadata) == {"team": "ml", "tier": "gold"}
    assert sorted((entry["alias"], entry["version"]["version"]) for entry in aliases) == [
        ("challenger", "2.1.0"),
        ("champion", "1.0.0"),
    ]
    # Markdown, rendered safely.
    assert "Churn</h1>" in html
    assert "<strong>churn</strong>" in html
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    assert hrefs(html) == ["https://example.com/docs"]
    assert "javascript:alert" not in "".join(hrefs(html))


# --- model mutations ----------------------------------------------------------------------


async def test_model_create_and_its_errors(api: GraphQLApi) -> None:
    reporter = await api.add_user("reporter", role=Role.REPORTER)
    outsider = await api.add_user("outsider")

    created = await create_model(
        api,
        "Fraud Detector",
        description="Finds *fraud*",
        metadata=kv(team="risk", tier="gold"),
    )
    named = await create_model(api, "Fraud V2", name="fraud-v2")
    taken_name = await mutate(
        api,
        "modelCreate",
        {"project": api.project_path, "displayName": "Another", "name": "fraud_detector"},
        MODEL_RESULT,
    )
    taken_display_name = await mutate(
        api, "modelCreate", {"project": api.project_path, "displayName": "Fraud V2"}, MODEL_RESULT
    )
    bad_slug = await mutate(
        api,
        "modelCreate",
        {"project": api.project_path, "displayName": "Bad", "name": "Bad Slug!"},
        MODEL_RESULT,
    )
    blank = await mutate(
        api, "modelCreate", {"project": api.project_path, "displayName": "   "}, MODEL_RESULT
    )
    as_reporter = await mutate(
        api,
        "modelCreate",
        {"project": api.project_path, "displayName": "Reported"},
        MODEL_RESULT,
        token=reporter,
    )
    unknown_project = await mutate(
        api, "modelCreate", {"project": "nope", "displayName": "Lost"}, MODEL_RESULT
    )
    hidden_project = await mutate(
        api,
        "modelCreate",
        {"project": api.project_path, "displayName": "Sneaky"},
        MODEL_RESULT,
        token=outsider,
    )

    assert {key: created[key] for key in ("name", "displayName", "description")} == {
        "name": "fraud_detector",
        "displayName": "Fraud Detector",
        "description": "Finds *fraud*",
    }
    assert by_name(created["metadata"]) == {"team": "risk", "tier": "gold"}
    assert created["author"] == {"username": "root"}
    assert created["project"] == {"path": api.project_path}
    assert created["versionCount"] == 0
    assert created["candidateCount"] == 0
    assert created["latestVersion"] is None
    assert named["name"] == "fraud-v2"
    assert (typename(taken_name), taken_name["field"]) == ("ConflictError", "name")
    assert typename(taken_display_name) == "ConflictError"
    assert (typename(bad_slug), bad_slug["field"]) == ("ValidationError", "name")
    assert typename(blank) == "ValidationError"
    assert (typename(as_reporter), as_reporter["code"]) == ("PermissionError", "FORBIDDEN")
    assert typename(unknown_project) == "NotFoundError"
    assert typename(hidden_project) == "NotFoundError"
    assert await model_names(api) == ["default", "fraud-v2", "fraud_detector"]
    assert (await model_by_id(api, created["id"], "name"))["name"] == "fraud_detector"


async def test_model_update_renames_describes_and_merges_metadata(api: GraphQLApi) -> None:
    reporter = await api.add_user("reporter", role=Role.REPORTER)
    model = await create_model(api, "Churn", metadata=kv(team="a", stage="x"))
    await create_model(api, "Taken")

    updated = await mutate(
        api,
        "modelUpdate",
        {
            "id": model["id"],
            "displayName": "Churn Renamed",
            "description": "Now with **markdown**",
            "metadata": kv(team="b", owner="c"),
        },
        MODEL_RESULT,
    )
    clash = await mutate(
        api, "modelUpdate", {"id": model["id"], "displayName": "Taken"}, MODEL_RESULT
    )
    as_reporter = await mutate(
        api, "modelUpdate", {"id": model["id"], "description": "no"}, MODEL_RESULT, token=reporter
    )
    read_back = await model_by_id(
        api, model["id"], "name displayName description descriptionHtml metadata { name value }"
    )

    assert typename(updated) == "Model", updated
    assert updated["name"] == "churn"
    assert updated["displayName"] == "Churn Renamed"
    assert updated["description"] == "Now with **markdown**"
    assert by_name(updated["metadata"]) == {"team": "b", "stage": "x", "owner": "c"}
    assert dt.datetime.fromisoformat(updated["updatedAt"]) >= dt.datetime.fromisoformat(
        model["updatedAt"]
    )
    assert typename(clash) == "ConflictError"
    assert (typename(as_reporter), as_reporter["code"]) == ("PermissionError", "FORBIDDEN")
    assert read_back["name"] == "churn"
    assert read_back["displayName"] == "Churn Renamed"
    assert read_back["description"] == "Now with **markdown**"
    assert "<strong>markdown</strong>" in read_back["descriptionHtml"]
    assert by_name(read_back["metadata"]) == {"team": "b", "stage": "x", "owner": "c"}


async def test_model_delete_hides_the_model_at_once_and_its_job_succeeds(
    api: GraphQLApi,
) -> None:
    developer = await api.add_user("developer", role=Role.DEVELOPER)
    model = await create_model(api, "Churn")
    version = await create_version(api, model["id"])
    candidate = await create_candidate(api, model["id"], name="c")

    refused = await mutate(api, "modelDelete", {"id": model["id"]}, JOB_STARTED, token=developer)
    started = await mutate(api, "modelDelete", {"id": model["id"]}, JOB_STARTED)
    at_once = await by_id(api, "model", model["id"], "id")
    by_slug = await api.data(
        'query($path: String!) { project(path: $path) { model(name: "churn") { id } } }',
        {"path": api.project_path},
    )
    job = await finished_job(api, started, "delete_model")
    default_model_id = await api.model_id("default")
    default_refused = await mutate(api, "modelDelete", {"id": default_model_id}, JOB_STARTED)
    again = await create_model(api, "Churn")

    assert (typename(refused), refused["code"]) == ("PermissionError", "FORBIDDEN")
    assert at_once is None
    assert by_slug == {"project": {"model": None}}
    assert job["kind"] == "delete_model"
    assert job["finishedAt"] is not None
    assert job["error"] is None
    assert await by_id(api, "modelVersion", version["id"], "id") is None
    assert await by_id(api, "candidate", candidate["id"], "id") is None
    assert typename(default_refused) == "ValidationError"
    assert again["name"] == "churn"
    assert await model_names(api) == ["churn", "default"]


async def test_the_id_of_a_destroyed_model_stays_missing_after_a_new_model_is_made(
    api: GraphQLApi,
) -> None:
    model = await create_model(api, "Churn")
    started = await mutate(api, "modelDelete", {"id": model["id"]}, JOB_STARTED)
    await finished_job(api, started, "delete_model")

    again = await create_model(api, "Churn")
    stale = await by_id(api, "model", model["id"], "id name")

    assert stale is None
    assert again["id"] != model["id"]


# --- version mutations --------------------------------------------------------------------


async def test_model_version_create_fresh_promoted_and_with_a_chosen_semver(
    api: GraphQLApi,
) -> None:
    model = await create_model(api, "Churn")
    candidate = await create_candidate(api, model["id"], name="trained")

    fresh = await create_version(api, model["id"])
    promoted = await create_version(
        api,
        model["id"],
        candidateId=candidate["id"],
        description="From **training**",
        metadata=kv(source="nightly"),
    )
    chosen = await create_version(api, model["id"], version="3.1.4")
    duplicate = await mutate(
        api, "modelVersionCreate", {"modelId": model["id"], "version": "3.1.4"}, VERSION_RESULT
    )
    bad_semver = await mutate(
        api, "modelVersionCreate", {"modelId": model["id"], "version": "v1"}, VERSION_RESULT
    )
    promoted_twice = await mutate(
        api,
        "modelVersionCreate",
        {"modelId": model["id"], "candidateId": candidate["id"]},
        VERSION_RESULT,
    )
    read_back = await model_by_id(
        api, model["id"], "versionCount candidateCount latestVersion { number version }"
    )
    candidate_now = await by_id(api, "candidate", candidate["id"], "version { id version }")

    assert {key: fresh[key] for key in ("number", "version", "stage", "aliases")} == {
        "number": 1,
        "version": "1.0.0",
        "stage": "NONE",
        "aliases": [],
    }
    assert fresh["model"] == {"id": model["id"], "name": "churn"}
    assert fresh["candidate"]["name"] == "version-1.0.0"
    assert fresh["candidate"]["status"] == "FINISHED"
    assert fresh["candidate"]["version"] == {"id": fresh["id"]}
    assert (promoted["number"], promoted["version"]) == (2, "2.0.0")
    assert promoted["candidate"]["id"] == candidate["id"]
    assert promoted["description"] == "From **training**"
    assert "<strong>training</strong>" in promoted["descriptionHtml"]
    assert by_name(promoted["metadata"]) == {"source": "nightly"}
    assert (chosen["number"], chosen["version"]) == (3, "3.1.4")
    assert (typename(duplicate), duplicate["field"]) == ("ConflictError", "version")
    assert typename(bad_semver) == "ValidationError"
    assert typename(promoted_twice) == "ConflictError"
    assert read_back == {
        "versionCount": 3,
        "candidateCount": 3,
        "latestVersion": {"number": 3, "version": "3.1.4"},
    }
    assert candidate_now == {"version": {"id": promoted["id"], "version": "2.0.0"}}


async def test_a_candidate_of_another_model_cannot_be_promoted(api: GraphQLApi) -> None:
    model = await create_model(api, "Churn")
    other = await create_model(api, "Fraud")
    foreign = await create_candidate(api, other["id"], name="foreign")

    result = await mutate(
        api,
        "modelVersionCreate",
        {"modelId": model["id"], "candidateId": foreign["id"]},
        VERSION_RESULT,
    )
    model_now = await model_by_id(api, model["id"], "versionCount candidateCount")
    other_now = await model_by_id(api, other["id"], "versionCount candidateCount")
    foreign_now = await by_id(api, "candidate", foreign["id"], "version { id } model { id }")

    assert typename(result) in ("ValidationError", "NotFoundError"), result
    assert model_now == {"versionCount": 0, "candidateCount": 0}
    assert other_now == {"versionCount": 0, "candidateCount": 1}
    assert foreign_now == {"version": None, "model": {"id": other["id"]}}


async def test_model_version_update_stage_description_and_metadata(api: GraphQLApi) -> None:
    reporter = await api.add_user("reporter", role=Role.REPORTER)
    model = await create_model(api, "Churn")
    version = await create_version(api, model["id"], metadata=kv(k="v"))

    staged = await mutate(
        api,
        "modelVersionUpdate",
        {
            "id": version["id"],
            "stage": "STAGING",
            "description": "Ready for **review**",
            "metadata": kv(k="v2", k2="w"),
        },
        VERSION_RESULT,
    )
    produced = await mutate(
        api, "modelVersionUpdate", {"id": version["id"], "stage": "PRODUCTION"}, VERSION_RESULT
    )
    as_reporter = await mutate(
        api,
        "modelVersionUpdate",
        {"id": version["id"], "stage": "ARCHIVED"},
        VERSION_RESULT,
        token=reporter,
    )
    read_back = await by_id(
        api, "modelVersion", version["id"], "stage description metadata { name value }"
    )

    assert typename(staged) == "ModelVersion", staged
    assert staged["stage"] == "STAGING"
    assert staged["description"] == "Ready for **review**"
    assert "<strong>review</strong>" in staged["descriptionHtml"]
    assert by_name(staged["metadata"]) == {"k": "v2", "k2": "w"}
    assert dt.datetime.fromisoformat(staged["updatedAt"]) >= dt.datetime.fromisoformat(
        version["updatedAt"]
    )
    assert produced["stage"] == "PRODUCTION"
    assert produced["description"] == "Ready for **review**"
    assert (typename(as_reporter), as_reporter["code"]) == ("PermissionError", "FORBIDDEN")
    assert read_back is not None
    assert read_back["stage"] == "PRODUCTION"
    assert read_back["description"] == "Ready for **review**"
    assert by_name(read_back["metadata"]) == {"k": "v2", "k2": "w"}


async def test_model_version_delete_keeps_the_candidate_and_frees_the_semver(
    api: GraphQLApi,
) -> None:
    model = await create_model(api, "Churn")
    first = await create_version(api, model["id"])
    second = await create_version(api, model["id"])
    alias = await mutate(
        api, "aliasSet", {"versionId": first["id"], "alias": "champion"}, VERSION_RESULT
    )
    assert typename(alias) == "ModelVersion", alias

    started = await mutate(api, "modelVersionDelete", {"id": first["id"]}, JOB_STARTED)
    at_once = await by_id(api, "modelVersion", first["id"], "id")
    await finished_job(api, started, "delete_version")
    model_now = await model_by_id(
        api,
        model["id"],
        "versionCount candidateCount aliases { alias }"
        " versions { edges { node { version } } } latestVersion { version }",
    )
    candidate_now = await by_id(api, "candidate", first["candidate"]["id"], "name version { id }")
    again = await create_version(api, model["id"], version="1.0.0")

    assert at_once is None
    assert model_now == {
        "versionCount": 1,
        "candidateCount": 2,
        "aliases": [],
        "versions": {"edges": [{"node": {"version": "2.0.0"}}]},
        "latestVersion": {"version": "2.0.0"},
    }
    assert candidate_now == {"name": "version-1.0.0", "version": None}
    assert again["version"] == "1.0.0"
    assert again["number"] == 3
    assert second["number"] == 2


async def test_alias_set_moves_and_alias_delete_removes(api: GraphQLApi) -> None:
    model = await create_model(api, "Churn")
    first = await create_version(api, model["id"])
    second = await create_version(api, model["id"])

    on_first = await mutate(
        api, "aliasSet", {"versionId": first["id"], "alias": "champion"}, VERSION_RESULT
    )
    moved = await mutate(
        api, "aliasSet", {"versionId": second["id"], "alias": "champion"}, VERSION_RESULT
    )
    staging = await mutate(
        api, "aliasSet", {"versionId": first["id"], "alias": "staging-pick"}, VERSION_RESULT
    )
    after_set = await model_by_id(
        api,
        model["id"],
        'aliases { alias version { version } } first: version(version: "1.0.0") { aliases }'
        ' second: version(version: "2.0.0") { aliases }',
    )
    reserved = await mutate(
        api, "aliasSet", {"versionId": first["id"], "alias": "latest"}, VERSION_RESULT
    )
    version_like = await mutate(
        api, "aliasSet", {"versionId": first["id"], "alias": "v3"}, VERSION_RESULT
    )
    deleted = await mutate(
        api,
        "aliasDelete",
        {"modelId": model["id"], "alias": "champion"},
        f"{ERROR_FIELDS} ... on AliasDeleted {{ alias model {{ id aliases {{ alias }} }} }}",
    )
    deleted_again = await mutate(
        api, "aliasDelete", {"modelId": model["id"], "alias": "champion"}, ERROR_FIELDS
    )
    after_delete = await model_by_id(api, model["id"], "aliases { alias version { version } }")

    assert on_first["aliases"] == ["champion"]
    assert moved["aliases"] == ["champion"]
    assert staging["aliases"] == ["staging-pick"]
    assert sorted(
        (entry["alias"], entry["version"]["version"]) for entry in after_set["aliases"]
    ) == [("champion", "2.0.0"), ("staging-pick", "1.0.0")]
    assert after_set["first"] == {"aliases": ["staging-pick"]}
    assert after_set["second"] == {"aliases": ["champion"]}
    assert (typename(reserved), reserved["field"]) == ("ValidationError", "alias")
    assert (typename(version_like), version_like["field"]) == ("ValidationError", "alias")
    assert deleted == {
        "__typename": "AliasDeleted",
        "alias": "champion",
        "model": {"id": model["id"], "aliases": [{"alias": "staging-pick"}]},
    }
    assert typename(deleted_again) == "NotFoundError"
    assert after_delete == {"aliases": [{"alias": "staging-pick", "version": {"version": "1.0.0"}}]}


async def test_promote_the_best_candidate_and_make_it_champion(api: GraphQLApi) -> None:
    model = await create_model(api, "Churn")
    ids = {}
    for name, accuracy in (("low", 0.7), ("best", 0.92), ("middle", 0.85), ("none", None)):
        candidate = await create_candidate(api, model["id"], name=name)
        ids[name] = candidate["id"]
        if accuracy is not None:
            logged = await mutate(
                api,
                "candidateLogMetrics",
                {"id": candidate["id"], "metrics": [{"name": "acc", "value": accuracy}]},
                CANDIDATE_RESULT,
            )
            assert typename(logged) == "Candidate", logged

    best = await model_by_id(
        api,
        model["id"],
        'candidates(orderBy: {field: METRIC, key: "acc", direction: DESC}, first: 1) {'
        ' totalCount edges { node { id name metric(name: "acc") { value } } } }',
    )
    [node] = edges_of(best["candidates"])
    version = await create_version(api, model["id"], candidateId=node["id"])
    champion = await mutate(
        api, "aliasSet", {"versionId": version["id"], "alias": "champion"}, VERSION_RESULT
    )
    read_back = await model_by_id(
        api,
        model["id"],
        "aliases { alias version { id version candidate { id name } } }"
        ' version(version: "1.0.0") { aliases candidate { name metric(name: "acc") { value } } }'
        " latestVersion { id }",
    )

    assert best["candidates"]["totalCount"] == 4
    assert node == {"id": ids["best"], "name": "best", "metric": {"value": 0.92}}
    assert version["candidate"]["id"] == ids["best"]
    assert champion["aliases"] == ["champion"]
    assert read_back == {
        "aliases": [
            {
                "alias": "champion",
                "version": {
                    "id": version["id"],
                    "version": "1.0.0",
                    "candidate": {"id": ids["best"], "name": "best"},
                },
            }
        ],
        "version": {
            "aliases": ["champion"],
            "candidate": {"name": "best", "metric": {"value": 0.92}},
        },
        "latestVersion": {"id": version["id"]},
    }


# --- candidate mutations ------------------------------------------------------------------


async def test_candidate_create_with_params_and_metadata(api: GraphQLApi) -> None:
    model = await create_model(api, "Churn")

    named = await create_candidate(
        api,
        model["id"],
        name="run-1",
        params=kv(lr="0.1", batch="32"),
        metadata=kv(team="ml", git="abc123"),
    )
    unnamed = await create_candidate(api, model["id"])
    bad_param = await mutate(
        api,
        "candidateCreate",
        {"modelId": model["id"], "params": kv(**{"../escape": "x"})},
        CANDIDATE_RESULT,
    )
    counts = await model_by_id(api, model["id"], "candidateCount")

    assert named["name"] == "run-1"
    assert named["status"] == "RUNNING"
    assert named["params"] == kv(batch="32", lr="0.1")
    assert named["metadata"] == kv(git="abc123", team="ml")
    assert named["model"] == {"id": model["id"]}
    assert named["author"] == {"username": "root"}
    assert named["version"] is None
    assert named["deleted"] is False
    assert named["metrics"] == []
    assert named["endTime"] is None
    started = dt.datetime.fromisoformat(named["startTime"])
    assert abs(started - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    assert re.fullmatch(r"[0-9a-f]{32}", named["eid"])
    assert unnamed["name"] == f"candidate-{unnamed['iid']}"
    assert unnamed["iid"] > named["iid"]
    assert typename(bad_param) == "ValidationError"
    assert counts == {"candidateCount": 2}


async def test_candidate_update_renames_and_finishing_sets_the_end_time(api: GraphQLApi) -> None:
    model = await create_model(api, "Churn")
    candidate = await create_candidate(api, model["id"], name="run", metadata=kv(a="1"))
    killed = await create_candidate(api, model["id"], name="doomed")

    renamed = await mutate(
        api,
        "candidateUpdate",
        {"id": candidate["id"], "name": "run-renamed", "metadata": kv(a="2", b="3")},
        CANDIDATE_RESULT,
    )
    finished = await mutate(
        api, "candidateUpdate", {"id": candidate["id"], "status": "FINISHED"}, CANDIDATE_RESULT
    )
    was_killed = await mutate(
        api, "candidateUpdate", {"id": killed["id"], "status": "KILLED"}, CANDIDATE_RESULT
    )

    assert renamed["name"] == "run-renamed"
    assert renamed["status"] == "RUNNING"
    assert renamed["endTime"] is None
    assert renamed["metadata"] == kv(a="2", b="3")
    assert finished["status"] == "FINISHED"
    assert finished["name"] == "run-renamed"
    assert finished["endTime"] is not None
    assert dt.datetime.fromisoformat(finished["endTime"]) >= dt.datetime.fromisoformat(
        finished["startTime"]
    )
    assert was_killed["status"] == "KILLED"
    assert was_killed["endTime"] is not None


async def test_candidate_log_metrics_appends_history_and_moves_the_latest_value(
    api: GraphQLApi,
) -> None:
    model = await create_model(api, "Churn")
    candidate = await create_candidate(api, model["id"], name="run")
    stamp = "2024-05-01T12:00:00+00:00"

    first = await mutate(
        api,
        "candidateLogMetrics",
        {
            "id": candidate["id"],
            "metrics": [
                {"name": "acc", "value": 0.5, "step": 0, "timestamp": stamp},
                {"name": "loss", "value": 1.25},
            ],
        },
        CANDIDATE_RESULT,
    )
    second = await mutate(
        api,
        "candidateLogMetrics",
        {"id": candidate["id"], "metrics": [{"name": "acc", "value": 0.8, "step": 1}]},
        CANDIDATE_RESULT,
    )
    history = await by_id(
        api,
        "candidate",
        candidate["id"],
        'metricHistory(name: "acc") { totalCount edges { node { value step timestamp } } }',
    )

    assert typename(first) == "Candidate", first
    assert [(m["name"], m["value"], m["kind"], m["step"]) for m in first["metrics"]] == [
        ("acc", 0.5, "FINITE", 0),
        ("loss", 1.25, "FINITE", 0),
    ]
    assert dt.datetime.fromisoformat(first["metrics"][0]["timestamp"]) == dt.datetime(
        2024, 5, 1, 12, tzinfo=dt.UTC
    )
    assert [(m["name"], m["value"], m["step"]) for m in second["metrics"]] == [
        ("acc", 0.8, 1),
        ("loss", 1.25, 0),
    ]
    assert history is not None
    assert history["metricHistory"]["totalCount"] == 2
    assert [(n["value"], n["step"]) for n in edges_of(history["metricHistory"])] == [
        (0.5, 0),
        (0.8, 1),
    ]


async def test_candidate_delete_destroys_it_through_a_job(api: GraphQLApi) -> None:
    model = await create_model(api, "Churn")
    kept = await create_candidate(api, model["id"], name="kept")
    doomed = await create_candidate(api, model["id"], name="doomed")
    await mutate(
        api,
        "candidateLogMetrics",
        {"id": doomed["id"], "metrics": [{"name": "acc", "value": 1.0}]},
        CANDIDATE_RESULT,
    )
    version = await create_version(api, model["id"])

    started = await mutate(api, "candidateDelete", {"id": doomed["id"]}, JOB_STARTED)
    at_once = await by_id(api, "candidate", doomed["id"], "id")
    job = await finished_job(api, started, "delete_candidate")
    of_version = await mutate(
        api, "candidateDelete", {"id": version["candidate"]["id"]}, JOB_STARTED
    )
    listed = await model_by_id(
        api, model["id"], "candidateCount candidates { totalCount edges { node { id } } }"
    )

    assert at_once is None
    assert job["finishedAt"] is not None
    assert typename(of_version) == "ValidationError"
    assert listed["candidateCount"] == 2
    assert listed["candidates"]["totalCount"] == 2
    assert {node["id"] for node in edges_of(listed["candidates"])} == {
        kept["id"],
        version["candidate"]["id"],
    }


async def test_package_types_migrate_starts_a_job_that_succeeds(api: GraphQLApi) -> None:
    developer = await api.add_user("developer", role=Role.DEVELOPER)

    started = await mutate(api, "packageTypesMigrate", {"project": api.project_path}, JOB_STARTED)
    job = await finished_job(api, started, "migrate_package_types")
    refused = await mutate(
        api, "packageTypesMigrate", {"project": api.project_path}, JOB_STARTED, token=developer
    )
    unknown = await mutate(api, "packageTypesMigrate", {"project": "nope"}, JOB_STARTED)

    assert job["finishedAt"] is not None
    assert isinstance(job["progress"]["details"], dict)
    assert (typename(refused), refused["code"]) == ("PermissionError", "FORBIDDEN")
    assert typename(unknown) == "NotFoundError"


# --- read_api tokens ----------------------------------------------------------------------

SNAPSHOT = """
query($id: ID!, $path: String!) {
  project(path: $path) { models { totalCount edges { node { name displayName } } } }
  model(id: $id) {
    displayName description metadata { name value } versionCount candidateCount
    aliases { alias version { version } }
    versions { edges { node { version stage description } } }
    candidates { edges { node { name status endTime metrics { name value } } } }
  }
}
"""


async def test_a_read_api_token_gets_a_permission_error_from_every_mutation(
    api: GraphQLApi,
) -> None:
    model = await create_model(api, "Churn", metadata=kv(team="ml"))
    version = await create_version(api, model["id"])
    await mutate(api, "aliasSet", {"versionId": version["id"], "alias": "champion"}, ERROR_FIELDS)
    candidate = await create_candidate(api, model["id"], name="run")
    read_only = await api.read_only_admin_token()
    attempts = {
        "modelCreate": {"project": api.project_path, "displayName": "New"},
        "modelUpdate": {"id": model["id"], "displayName": "Renamed"},
        "modelDelete": {"id": model["id"]},
        "modelVersionCreate": {"modelId": model["id"]},
        "modelVersionUpdate": {"id": version["id"], "stage": "STAGING"},
        "modelVersionDelete": {"id": version["id"]},
        "aliasSet": {"versionId": version["id"], "alias": "other"},
        "aliasDelete": {"modelId": model["id"], "alias": "champion"},
        "candidateCreate": {"modelId": model["id"], "name": "sneaky"},
        "candidateUpdate": {"id": candidate["id"], "status": "FINISHED"},
        "candidateDelete": {"id": candidate["id"]},
        "candidateLogMetrics": {"id": candidate["id"], "metrics": [{"name": "a", "value": 1.0}]},
        "packageTypesMigrate": {"project": api.project_path},
    }
    snapshot_variables = {"id": model["id"], "path": api.project_path}
    before = await api.data(SNAPSHOT, snapshot_variables)

    outcomes = {}
    for name, arguments in attempts.items():
        result = await mutate(api, name, arguments, ERROR_FIELDS, token=read_only)
        outcomes[name] = (typename(result), result.get("code"))
    readable = await api.data(SNAPSHOT, snapshot_variables, token=read_only)
    after = await api.data(SNAPSHOT, snapshot_variables)

    assert outcomes == dict.fromkeys(attempts, ("PermissionError", "FORBIDDEN"))
    assert readable == before
    assert after == before
