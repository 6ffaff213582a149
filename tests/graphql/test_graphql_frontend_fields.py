"""What a frontend needs from GraphQL beside the objects themselves, on SQLite and
PostgreSQL: one error vocabulary in unions and in `extensions.code`; a malformed id in a
mutation's input answered by its ValidationError; a bad cursor nulling only its
connection; projects and users as nodes and an `id` on every entity; the web UI's paths;
a version's upload URL; a project's jobs with their target and progress; deleting
metadata entries."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.models import Role
from app.services import candidates, logged_models, models, projects, users
from app.services.actor import OPERATOR
from tests.graphql_support import ERROR_FIELDS, GraphQLApi, edges_of, graphql_api, typename


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[GraphQLApi]:
    async with graphql_api(database_url, tmp_path) as served:
        yield served


async def mutate(
    api: GraphQLApi, name: str, arguments: dict[str, Any], selection: str, **options: Any
) -> dict[str, Any]:
    input_type = name[0].upper() + name[1:] + "Input"
    found = await api.data(
        f"mutation($input: {input_type}!) {{ {name}(input: $input) {{ {selection} }} }}",
        {"input": arguments},
        **options,
    )
    result: dict[str, Any] = found[name]
    return result


def row_of(global_id: str) -> int:
    """The row id a global id holds."""
    return int(base64.b64decode(global_id).decode().split(":", 1)[1])


async def seed(api: GraphQLApi) -> dict[str, Any]:
    """A model `churn` with metadata, a candidate with metadata and two metric values, and
    version 1.0.0 of that candidate with metadata and the alias `champion`."""
    model = await mutate(
        api,
        "modelCreate",
        {
            "project": api.project_path,
            "displayName": "Churn",
            "metadata": [{"name": "team", "value": "a"}, {"name": "tier", "value": "1"}],
        },
        f"{ERROR_FIELDS} ... on Model {{ id }}",
    )
    candidate = await mutate(
        api,
        "candidateCreate",
        {"modelId": model["id"], "name": "run", "metadata": [{"name": "k", "value": "v"}]},
        f"{ERROR_FIELDS} ... on Candidate {{ id iid }}",
    )
    logged = await mutate(
        api,
        "candidateLogMetrics",
        {
            "id": candidate["id"],
            "metrics": [{"name": "loss", "value": 1.0, "step": s} for s in (0, 1)],
        },
        "__typename",
    )
    version = await mutate(
        api,
        "modelVersionCreate",
        {
            "modelId": model["id"],
            "candidateId": candidate["id"],
            "version": "1.0.0",
            "metadata": [{"name": "x", "value": "1"}, {"name": "y", "value": "2"}],
        },
        f"{ERROR_FIELDS} ... on ModelVersion {{ id }}",
    )
    alias = await mutate(
        api,
        "aliasSet",
        {"versionId": version["id"], "alias": "champion"},
        f"{ERROR_FIELDS} ... on ModelVersion {{ aliases }}",
    )
    assert (typename(logged), alias) == (
        "Candidate",
        {"__typename": "ModelVersion", "aliases": ["champion"]},
    )
    return {"model": model, "candidate": candidate, "version": version}


# --- one error vocabulary ---------------------------------------------------------------


async def test_union_errors_and_extensions_use_the_same_codes(api: GraphQLApi) -> None:
    reporter = await api.add_user("reporter", role=Role.REPORTER)
    seeded = await seed(api)
    model_id = seeded["model"]["id"]
    create = {"project": api.project_path, "displayName": "Churn"}
    missing_id = base64.b64encode(b"Model:987654").decode()

    invalid = await mutate(api, "modelCreate", {**create, "name": "Not A Slug"}, ERROR_FIELDS)
    taken = await mutate(api, "modelCreate", create, ERROR_FIELDS)
    missing = await mutate(api, "modelUpdate", {"id": missing_id}, ERROR_FIELDS)
    forbidden = await mutate(
        api, "modelUpdate", {"id": model_id, "description": "d"}, ERROR_FIELDS, token=reporter
    )
    top_level = await api.refusal(
        "query($path: String!) { project(path: $path) { models(first: -1) { totalCount } } }",
        {"path": api.project_path},
    )

    assert [(typename(e), e["code"]) for e in (invalid, taken, missing, forbidden)] == [
        ("ValidationError", "VALIDATION_ERROR"),
        ("ConflictError", "CONFLICT"),
        ("NotFoundError", "NOT_FOUND"),
        ("PermissionError", "FORBIDDEN"),
    ]
    assert top_level == (["VALIDATION_ERROR"], "first")


async def test_a_malformed_id_in_a_mutation_input_is_the_mutations_validation_error(
    api: GraphQLApi,
) -> None:
    model_id = await api.model_id("default")
    job_id = base64.b64encode(b"Job:1").decode()

    answers = {
        "modelUpdate": await mutate(api, "modelUpdate", {"id": "not-a-global-id"}, ERROR_FIELDS),
        "modelVersionCreate": await mutate(
            api, "modelVersionCreate", {"modelId": "%%%"}, ERROR_FIELDS
        ),
        "candidateCreate": await mutate(api, "candidateCreate", {"modelId": job_id}, ERROR_FIELDS),
        "aliasSet": await mutate(
            api, "aliasSet", {"versionId": model_id, "alias": "a"}, ERROR_FIELDS
        ),
    }

    assert {name: (typename(a), a["code"], a["field"]) for name, a in answers.items()} == {
        "modelUpdate": ("ValidationError", "VALIDATION_ERROR", "id"),
        "modelVersionCreate": ("ValidationError", "VALIDATION_ERROR", "modelId"),
        "candidateCreate": ("ValidationError", "VALIDATION_ERROR", "modelId"),
        "aliasSet": ("ValidationError", "VALIDATION_ERROR", "versionId"),
    }
    assert answers["modelUpdate"]["message"] == "'not-a-global-id' is not the id of a Model"


async def test_a_bad_argument_nulls_only_its_connection(api: GraphQLApi) -> None:
    await seed(api)

    body = await api.post(
        """query($path: String!) { project(path: $path) { path model(name: "churn") {
             name
             candidates(after: "garbage") { totalCount }
             versions(first: 1) { totalCount }
           } } }""",
        {"path": api.project_path},
    )
    jobs = await api.post(
        "query($path: String!) { project(path: $path) { path jobs(first: 5000) { totalCount } } }",
        {"path": api.project_path},
    )

    assert body["data"] == {
        "project": {
            "path": "lab",
            "model": {"name": "churn", "candidates": None, "versions": {"totalCount": 1}},
        }
    }
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [
        (["project", "model", "candidates"], "VALIDATION_ERROR")
    ]
    assert jobs["data"] == {"project": {"path": "lab", "jobs": None}}
    assert [(e["path"], e["extensions"]) for e in jobs["errors"]] == [
        (["project", "jobs"], {"code": "VALIDATION_ERROR", "field": "first"})
    ]


# --- ids --------------------------------------------------------------------------------


NODE = "node(id: $id) { __typename id ... on Project { path } ... on User { username } }"


async def test_projects_and_users_are_nodes_and_every_entity_has_an_id(
    api: GraphQLApi,
) -> None:
    seeded = await seed(api)
    outsider = await api.add_user("outsider")
    member = await api.add_user("member", role=Role.DEVELOPER)
    async with api.database.session() as session:
        project_row = (await projects.get_project(session, path="lab")).id
        member_row = (await users.get_user(session, username="member")).id
        root_row = (await users.get_user(session, username="root")).id

    found = await api.data(
        """query($path: String!) { viewer { user { id username } } project(path: $path) {
             id members { id user { username } }
             model(name: "churn") { aliases { id alias } } } }""",
        {"path": api.project_path},
    )
    project_id = found["project"]["id"]
    user_id = found["viewer"]["user"]["id"]
    as_node = {
        node_id: (await api.data(f"query($id: ID!) {{ {NODE} }}", {"id": node_id}))["node"]
        for node_id in (project_id, user_id)
    }
    hidden_project = await api.data(
        f"query($id: ID!) {{ {NODE} }}", {"id": project_id}, token=outsider
    )
    user_for_member = await api.data(f"query($id: ID!) {{ {NODE} }}", {"id": user_id}, token=member)
    anonymous = await api.client.post(
        "/graphql", json={"query": f"query($id: ID!) {{ {NODE} }}", "variables": {"id": user_id}}
    )

    assert as_node == {
        project_id: {"__typename": "Project", "id": project_id, "path": "lab"},
        user_id: {"__typename": "User", "id": user_id, "username": "root"},
    }
    assert (row_of(project_id), row_of(user_id)) == (project_row, root_row)
    assert hidden_project == {"node": None}
    assert user_for_member["node"] == {"__typename": "User", "id": user_id, "username": "root"}
    assert anonymous.json() == {"data": {"node": None}}
    assert {m["user"]["username"]: m["id"] for m in found["project"]["members"]} == {
        "member": f"Member:{project_row}:{member_row}",
        "root": f"Member:{project_row}:{root_row}",
    }
    model_row = row_of(seeded["model"]["id"])
    assert found["project"]["model"]["aliases"] == [
        {"id": f"Alias:{model_row}:champion", "alias": "champion"}
    ]


async def test_a_versions_package_and_files_have_ids_and_its_upload_url_takes_files(
    api: GraphQLApi,
) -> None:
    seeded = await seed(api)
    version_id = seeded["version"]["id"]
    upload = await api.data(
        "query($id: ID!) { modelVersion(id: $id) { uploadUrl } }", {"id": version_id}
    )
    upload_url = upload["modelVersion"]["uploadUrl"]
    put = await api.client.put(
        f"{upload_url}model.pkl",
        content=b"weights",
        headers={"Authorization": f"Bearer {api.admin_token}"},
    )
    found = await api.data(
        """query($id: ID!) { modelVersion(id: $id) { package {
             id name version files { id path size downloadUrl } } } }""",
        {"id": version_id},
    )
    package = found["modelVersion"]["package"]

    version_row = row_of(version_id)
    assert upload_url == f"/api/v1/projects/lab/packages/ml_models/{version_row}/files/"
    assert put.status_code in (200, 201), put.text
    assert package["id"].startswith("Package:") and package["id"][8:].isdecimal()
    assert (package["name"], package["version"]) == ("churn", "1.0.0")
    [file] = package["files"]
    assert file["id"].startswith("PackageFile:") and file["id"][12:].isdecimal()
    assert (file["path"], file["size"], file["downloadUrl"]) == (
        "model.pkl",
        7,
        f"{upload_url}model.pkl",
    )


# --- web paths --------------------------------------------------------------------------


async def test_web_paths_of_projects_models_versions_and_candidates(api: GraphQLApi) -> None:
    seeded = await seed(api)

    found = await api.data(
        """query($path: String!) { project(path: $path) { webPath model(name: "churn") {
             webPath version(version: "1.0.0") { webPath candidate { webPath } } } } }""",
        {"path": api.project_path},
    )

    iid = seeded["candidate"]["iid"]
    assert found == {
        "project": {
            "webPath": "/lab",
            "model": {
                "webPath": "/lab/-/models/churn",
                "version": {
                    "webPath": "/lab/-/models/churn/versions/1.0.0",
                    "candidate": {"webPath": f"/lab/-/models/churn/candidates/{iid}"},
                },
            },
        }
    }


# --- jobs -------------------------------------------------------------------------------

JOBS = """query($path: String!, $status: [JobStatus!], $first: Int, $after: String) {
  project(path: $path) { jobs(status: $status, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { id kind status progress { done total details }
                   target { __typename ... on Project { path } } } } } } }"""


async def test_project_jobs_newest_first_with_their_target_and_progress(api: GraphQLApi) -> None:
    seeded = await seed(api)
    deleted_version = await mutate(
        api,
        "modelVersionDelete",
        {"id": seeded["version"]["id"]},
        "... on JobStarted { job { id } }",
    )
    await api.wait_for_job(deleted_version["job"]["id"])
    deleted_candidate = await mutate(
        api,
        "candidateDelete",
        {"id": seeded["candidate"]["id"]},
        "... on JobStarted { job { id } }",
    )
    await api.wait_for_job(deleted_candidate["job"]["id"])
    migration = await mutate(
        api, "packageTypesMigrate", {"project": "lab"}, "... on JobStarted { job { id } }"
    )
    await api.wait_for_job(migration["job"]["id"])

    every = (await api.data(JOBS, {"path": "lab"}))["project"]["jobs"]
    first_page = (await api.data(JOBS, {"path": "lab", "first": 2}))["project"]["jobs"]
    second_page = (
        await api.data(
            JOBS, {"path": "lab", "first": 2, "after": first_page["pageInfo"]["endCursor"]}
        )
    )["project"]["jobs"]
    pending = (await api.data(JOBS, {"path": "lab", "status": ["PENDING", "FAILED"]}))["project"][
        "jobs"
    ]

    nodes = edges_of(every)
    assert [(n["kind"], n["status"], n["target"]) for n in nodes] == [
        ("migrate_package_types", "SUCCEEDED", {"__typename": "Project", "path": "lab"}),
        ("delete_candidate", "SUCCEEDED", None),
        ("delete_version", "SUCCEEDED", None),
    ]
    assert [n["id"] for n in nodes] == [
        migration["job"]["id"],
        deleted_candidate["job"]["id"],
        deleted_version["job"]["id"],
    ]
    assert nodes[1]["progress"] == {
        "done": 3,
        "total": None,
        "details": {
            "candidates": 1,
            "metrics": 2,
            "versions": 0,
            "logged_models": 0,
            "packages": 0,
            "files": 0,
            "objects": 0,
        },
    }
    assert (nodes[2]["progress"]["done"], nodes[2]["progress"]["total"]) == (1, None)
    assert every["totalCount"] == 3
    assert [n["id"] for n in edges_of(first_page) + edges_of(second_page)] == [
        n["id"] for n in nodes
    ]
    assert (first_page["pageInfo"]["hasNextPage"], second_page["pageInfo"]["hasNextPage"]) == (
        True,
        False,
    )
    assert pending == {
        "totalCount": 0,
        "pageInfo": {"hasNextPage": False, "endCursor": None},
        "edges": [],
    }


# --- metadata ---------------------------------------------------------------------------

DELETED = (
    f"{ERROR_FIELDS} ... on Model {{ metadata {{ name }} }}"
    " ... on ModelVersion { metadata { name } } ... on Candidate { metadata { name } }"
)


async def test_metadata_entries_are_deleted_from_models_versions_and_candidates(
    api: GraphQLApi,
) -> None:
    seeded = await seed(api)
    model_id, version_id = seeded["model"]["id"], seeded["version"]["id"]
    candidate_id = seeded["candidate"]["id"]
    reporter = await api.add_user("reporter", role=Role.REPORTER)

    missing = await mutate(
        api, "metadataDelete", {"ownerId": model_id, "names": ["team", "nope"]}, DELETED
    )
    refused = await mutate(
        api, "metadataDelete", {"ownerId": model_id, "names": ["team"]}, DELETED, token=reporter
    )
    not_an_owner = await mutate(
        api,
        "metadataDelete",
        {"ownerId": base64.b64encode(b"Job:1").decode(), "names": ["a"]},
        DELETED,
    )
    model = await mutate(api, "metadataDelete", {"ownerId": model_id, "names": ["team"]}, DELETED)
    version = await mutate(
        api, "metadataDelete", {"ownerId": version_id, "names": ["x", "y"]}, DELETED
    )
    candidate = await mutate(
        api, "metadataDelete", {"ownerId": candidate_id, "names": ["k"]}, DELETED
    )
    too_many = await mutate(
        api,
        "metadataDelete",
        {"ownerId": model_id, "names": [f"n{index}" for index in range(1001)]},
        DELETED,
    )

    assert (typename(missing), missing["code"], missing["field"]) == (
        "NotFoundError",
        "NOT_FOUND",
        "name",
    )
    assert (typename(refused), refused["code"]) == ("PermissionError", "FORBIDDEN")
    assert (typename(not_an_owner), not_an_owner["field"]) == ("ValidationError", "ownerId")
    # The refused and the partly missing deletions changed nothing: `team` was there.
    assert model == {"__typename": "Model", "metadata": [{"name": "tier"}]}
    assert version == {"__typename": "ModelVersion", "metadata": []}
    assert [
        entry for entry in candidate["metadata"] if not entry["name"].startswith("mlflow.")
    ] == []
    assert typename(candidate) == "Candidate"
    assert (typename(too_many), too_many["code"], too_many["field"]) == (
        "ValidationError",
        "VALIDATION_ERROR",
        "names",
    )


# --- a version's files, signature and flavors -------------------------------------------

MLMODEL = b"""artifact_path: model
flavors:
  python_function:
    loader_module: mlflow.sklearn
    python_version: 3.11.9
  sklearn:
    pickled_model: model.pkl
    sklearn_version: 1.5.2
mlflow_version: 3.1.0
signature:
  inputs: '[{"type": "double", "name": "x", "required": true}]'
  outputs: '[{"type": "long", "required": true}]'
  params: null
"""

VERSION_FILES = """query($id: ID!) { modelVersion(id: $id) {
  source package { id }
  files(first: 1) { totalCount pageInfo { hasNextPage endCursor }
                    edges { node { path size sha256 downloadUrl } } }
  signature flavors { name version } } }"""


async def test_files_signature_and_flavors_of_a_version_registered_through_mlflow(
    api: GraphQLApi,
) -> None:
    async with api.database.session() as session:
        project = await projects.get_project(session, path=api.project_path)
        model = await models.create_model(
            session, project=project, display_name="Tracked", registered=True, actor=OPERATOR
        )
        run = await candidates.create_candidate(
            session, model=model, name="trained", actor=OPERATOR
        )
        logged = await logged_models.create_logged_model(
            session, model=model, name="classifier", source_candidate=run, actor=OPERATOR
        )
        iid, eid, run_id = model.iid, logged.eid, run.eid
    auth = {"Authorization": f"Bearer {api.admin_token}"}
    artifacts = (
        f"/projects/lab/mlflow/api/2.0/mlflow-artifacts/artifacts/{iid}/models/{eid}/artifacts"
    )
    for path, body in (("MLmodel", MLMODEL), ("model.pkl", b"weights")):
        stored = await api.client.put(f"{artifacts}/{path}", content=body, headers=auth)
        assert stored.status_code == 200, stored.text
    created = await api.client.post(
        "/projects/lab/mlflow/api/2.0/mlflow/model-versions/create",
        json={"name": "Tracked", "source": f"models:/{eid}", "run_id": run_id},
        headers=auth,
    )
    assert created.status_code == 200, created.text
    version_id = (
        await api.data(
            '{ project(path: "lab") { model(name: "tracked") { latestVersion { id } } } }'
        )
    )["project"]["model"]["latestVersion"]["id"]

    found = (await api.data(VERSION_FILES, {"id": version_id}))["modelVersion"]
    cursor = found["files"]["pageInfo"]["endCursor"]
    rest = await api.data(
        "query($id: ID!, $after: String) { modelVersion(id: $id) {"
        " files(after: $after) { edges { node { path } } } } }",
        {"id": version_id, "after": cursor},
    )
    mlmodel_download = await api.client.get(
        found["files"]["edges"][0]["node"]["downloadUrl"], headers=auth
    )

    assert (found["source"], found["package"]) == (f"models:/{eid}", None)
    assert found["files"]["totalCount"] == 2
    assert found["files"]["pageInfo"]["hasNextPage"] is True
    assert found["files"]["edges"] == [
        {
            "node": {
                "path": "MLmodel",
                "size": len(MLMODEL),
                "sha256": hashlib.sha256(MLMODEL).hexdigest(),
                "downloadUrl": f"{artifacts}/MLmodel",
            }
        }
    ]
    assert edges_of(rest["modelVersion"]["files"]) == [{"path": "model.pkl"}]
    assert mlmodel_download.content == MLMODEL
    assert found["signature"] == {
        "inputs": [{"type": "double", "name": "x", "required": True}],
        "outputs": [{"type": "long", "required": True}],
        "params": None,
    }
    assert found["flavors"] == [
        {"name": "python_function", "version": None},
        {"name": "sklearn", "version": "1.5.2"},
    ]


async def test_a_version_without_files_has_an_empty_list_no_signature_and_no_flavors(
    api: GraphQLApi,
) -> None:
    seeded = await seed(api)

    found = (await api.data(VERSION_FILES, {"id": seeded["version"]["id"]}))["modelVersion"]

    assert found["files"] == {
        "totalCount": 0,
        "pageInfo": {"hasNextPage": False, "endCursor": None},
        "edges": [],
    }
    assert (found["signature"], found["flavors"]) == (None, [])
