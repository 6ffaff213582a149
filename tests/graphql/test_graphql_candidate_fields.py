"""What a candidate table and a run page ask of GraphQL: params and metadata cut to the
columns shown, when a candidate was recorded, the datasets it used, its parent and
children (MLflow's nested runs), deleted candidates on request, every order a table
offers, a candidate by run id or iid, and one list across a project's models; each read
through per-request loaders, so a page of 50 costs the statements of a page of 5."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd  # type: ignore[import-untyped]
import pytest
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import from_pandas

from app.models import CandidateStatus, Visibility
from app.services import auth, candidates, models, projects, users
from app.services.actor import OPERATOR, SCOPE_API
from app.services.candidates import MetricPoint
from tests.clients import jobs_settled
from tests.graphql_support import GraphQLApi, edges_of, graphql_api
from tests.live_server import LiveServer
from tests.statements import queries, recorded


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[GraphQLApi]:
    async with graphql_api(database_url, tmp_path) as served:
        yield served


# --- Seeding through the services ------------------------------------------------------------

# name: (start, end, status, the tag `team`, param lr, metric acc); times in milliseconds.
RUNS: dict[str, tuple[int, int | None, CandidateStatus, str | None, str, float]] = {
    "c1": (1000, 5000, CandidateStatus.FINISHED, "b", "0.1", 0.7),
    "c2": (2000, 3000, CandidateStatus.FAILED, "a", "0.2", 0.9),
    "c3": (3000, None, CandidateStatus.RUNNING, None, "0.3", 0.8),
    "c4": (4000, 10000, CandidateStatus.KILLED, "c", "0.4", 0.6),
}


async def seed_runs(api: GraphQLApi, spread: dict[str, str] | None = None) -> dict[str, str]:
    """The candidates of RUNS, in the model `alpha`, or in the model `spread` names for
    each (created when first named); returns each one's MLflow run id."""
    eids: dict[str, str] = {}
    async with api.database.session() as session:
        project = await projects.get_project(session, path=api.project_path)
        by_name: dict[str, Any] = {}
        for name, (start, end, status, team, lr, acc) in RUNS.items():
            model_name = (spread or {}).get(name, "alpha")
            if model_name not in by_name:
                by_name[model_name] = await models.create_model(
                    session,
                    project=project,
                    display_name=model_name.title(),
                    name=model_name,
                    actor=OPERATOR,
                )
            candidate = await candidates.create_candidate(
                session, model=by_name[model_name], name=name, start_time=start, actor=OPERATOR
            )
            await candidates.log_batch(
                session,
                candidate=candidate,
                params={"lr": lr, "depth": "3"},
                tags={"team": team} if team is not None else {},
                metrics=[MetricPoint("acc", acc, timestamp=1)],
                actor=OPERATOR,
            )
            if status is not CandidateStatus.RUNNING:
                await candidates.update_candidate(
                    session, candidate=candidate, status=status, end_time=end, actor=OPERATOR
                )
            eids[name] = candidate.eid
    return eids


ORDERED_PAGE = """
query($path: String!, $order: CandidateOrder!, $first: Int, $after: String) {
  project(path: $path) { model(name: "alpha") {
    candidates(orderBy: $order, first: $first, after: $after) {
      edges { cursor node { name } }
      pageInfo { hasNextPage endCursor }
    } } }
}
"""


async def names_in_order(api: GraphQLApi, order: dict[str, Any]) -> list[str]:
    found = await api.data(ORDERED_PAGE, {"path": api.project_path, "order": order})
    return [node["name"] for node in edges_of(found["project"]["model"]["candidates"])]


async def names_page_by_page(api: GraphQLApi, order: dict[str, Any]) -> list[str]:
    """The whole order read one candidate per page, each page after the last cursor."""
    names: list[str] = []
    after = None
    while True:
        found = await api.data(
            ORDERED_PAGE, {"path": api.project_path, "order": order, "first": 1, "after": after}
        )
        connection = found["project"]["model"]["candidates"]
        names += [node["name"] for node in edges_of(connection)]
        if not connection["pageInfo"]["hasNextPage"]:
            return names
        after = connection["pageInfo"]["endCursor"]


# --- Fields of a candidate -------------------------------------------------------------------


async def test_params_and_metadata_are_cut_to_the_names_asked(api: GraphQLApi) -> None:
    await seed_runs(api)
    found = await api.data(
        """query($path: String!) { project(path: $path) { model(name: "alpha") {
             candidates(orderBy: {field: NAME, direction: ASC}, first: 2) { edges { node {
               name
               shown: params(names: ["lr", "never-logged", "lr"]) { name value }
               params { name value }
               none: params(names: []) { name }
               metadata(names: ["team"]) { name value }
             } } } } } }""",
        {"path": api.project_path},
    )
    nodes = edges_of(found["project"]["model"]["candidates"])
    assert nodes == [
        {
            "name": "c1",
            "shown": [{"name": "lr", "value": "0.1"}],
            "params": [{"name": "depth", "value": "3"}, {"name": "lr", "value": "0.1"}],
            "none": [],
            "metadata": [{"name": "team", "value": "b"}],
        },
        {
            "name": "c2",
            "shown": [{"name": "lr", "value": "0.2"}],
            "params": [{"name": "depth", "value": "3"}, {"name": "lr", "value": "0.2"}],
            "none": [],
            "metadata": [{"name": "team", "value": "a"}],
        },
    ]


async def test_created_at_is_when_the_registry_recorded_the_candidate(api: GraphQLApi) -> None:
    before = dt.datetime.now(dt.UTC)
    eids = await seed_runs(api)
    after = dt.datetime.now(dt.UTC)
    found = await api.data(
        "query($path: String!, $run: String!) { project(path: $path) {"
        " candidate(runId: $run) { createdAt startTime } } }",
        {"path": api.project_path, "run": eids["c1"]},
    )
    candidate = found["project"]["candidate"]
    async with api.database.session(read_only=True) as session:
        project = await projects.get_project(session, path=api.project_path)
        row = await candidates.get_candidate(session, project=project, eid=eids["c1"])
    created_at = dt.datetime.fromisoformat(candidate["createdAt"])
    assert created_at == row.created_at
    assert before <= created_at <= after
    # The start time is the run's own (MLflow's), not when it was recorded.
    assert candidate["startTime"] == "1970-01-01T00:00:01+00:00"


# --- Ordering ---------------------------------------------------------------------------------

# Running c3 has no end time, so no duration: it sorts last in both directions, as every
# missing value does; so does c3 by the tag it never set.
ORDERS = {
    "START_TIME": (["c1", "c2", "c3", "c4"], ["c4", "c3", "c2", "c1"]),
    "END_TIME": (["c2", "c1", "c4", "c3"], ["c4", "c1", "c2", "c3"]),
    "STATUS": (["c2", "c1", "c4", "c3"], ["c3", "c4", "c1", "c2"]),
    "DURATION": (["c2", "c1", "c4", "c3"], ["c4", "c1", "c2", "c3"]),
    "TAG": (["c2", "c1", "c4", "c3"], ["c4", "c1", "c2", "c3"]),
}


@pytest.mark.parametrize("field", list(ORDERS))
async def test_each_order_sorts_missing_values_last_and_pages_by_cursor(
    api: GraphQLApi, field: str
) -> None:
    await seed_runs(api)
    ascending, descending = ORDERS[field]
    for direction, expected in (("ASC", ascending), ("DESC", descending)):
        order = {"field": field, "direction": direction}
        if field == "TAG":
            order["key"] = "team"
        assert await names_in_order(api, order) == expected, direction
        assert await names_page_by_page(api, order) == expected, direction


async def test_ordering_by_a_tag_needs_its_name(api: GraphQLApi) -> None:
    await seed_runs(api)
    codes, field = await api.refusal(
        ORDERED_PAGE, {"path": api.project_path, "order": {"field": "TAG"}}
    )
    assert (codes, field) == (["VALIDATION_ERROR"], "orderBy.key")


async def test_lifecycle_shows_deleted_candidates_on_request(api: GraphQLApi) -> None:
    eids = await seed_runs(api)
    async with api.database.session() as session:
        project = await projects.get_project(session, path=api.project_path)
        row = await candidates.get_candidate(session, project=project, eid=eids["c2"])
        await candidates.delete_candidate(session, candidate=row, actor=OPERATOR)
    document = """query($path: String!, $filter: CandidateFilter) {
      project(path: $path) { model(name: "alpha") {
        candidates(filter: $filter, orderBy: {field: NAME, direction: ASC}) {
          totalCount edges { node { name deleted } } } } } }"""
    seen = {}
    for lifecycle in ("ACTIVE", "DELETED", "ALL", None):
        wanted = {} if lifecycle is None else {"lifecycle": lifecycle}
        found = await api.data(document, {"path": api.project_path, "filter": wanted})
        connection = found["project"]["model"]["candidates"]
        seen[lifecycle] = (connection["totalCount"], edges_of(connection))
    active = [{"name": name, "deleted": False} for name in ("c1", "c3", "c4")]
    assert seen["ACTIVE"] == seen[None] == (3, active)
    assert seen["DELETED"] == (1, [{"name": "c2", "deleted": True}])
    deleted = {"name": "c2", "deleted": True}
    assert seen["ALL"] == (4, [active[0], deleted, *active[1:]])


# --- Lookups and the project-wide list ---------------------------------------------------------

LOOKUP = """query($path: String!, $run: String, $iid: Int) {
  project(path: $path) { candidate(runId: $run, iid: $iid) { name eid iid deleted } } }"""


async def test_a_candidate_is_found_by_run_id_or_iid(api: GraphQLApi) -> None:
    eids = await seed_runs(api)
    path = api.project_path
    by_run = (await api.data(LOOKUP, {"path": path, "run": eids["c3"]}))["project"]["candidate"]
    assert by_run == {"name": "c3", "eid": eids["c3"], "iid": by_run["iid"], "deleted": False}
    by_iid = (await api.data(LOOKUP, {"path": path, "iid": by_run["iid"]}))["project"]
    assert by_iid["candidate"] == by_run
    for unknown in ({"run": "0" * 32}, {"iid": 999}):
        assert await api.data(LOOKUP, {"path": path, **unknown}) == {"project": {"candidate": None}}
    for both_or_none in ({"run": eids["c3"], "iid": by_run["iid"]}, {}):
        codes, field = await api.refusal(LOOKUP, {"path": path, **both_or_none})
        assert (codes, field) == (["VALIDATION_ERROR"], "runId")

    async with api.database.session() as session:
        project = await projects.get_project(session, path=path)
        row = await candidates.get_candidate(session, project=project, eid=eids["c3"])
        await candidates.delete_candidate(session, candidate=row, actor=OPERATOR)
    deleted = (await api.data(LOOKUP, {"path": path, "run": eids["c3"]}))["project"]
    assert deleted["candidate"] == {**by_run, "deleted": True}


async def test_a_candidate_the_caller_may_not_read_is_null_like_a_missing_one(
    api: GraphQLApi,
) -> None:
    eids = await seed_runs(api)
    async with api.database.session() as session:
        owner = await users.create_user(session, username="elsewhere")
        await projects.create_project(
            session, path="other", visibility=Visibility.PRIVATE, owner=owner, actor=OPERATOR
        )
        _, elsewhere = await auth.create_token(
            session, user=owner, name="elsewhere-token", scopes=(SCOPE_API,)
        )
    outsider = await api.add_user("outsider")
    lab_run = {"path": api.project_path, "run": eids["c1"]}
    assert await api.data(LOOKUP, lab_run, token=outsider) == {"project": None}
    # Another project's owner asking their own project for the lab's candidate.
    other_run = {"path": "other", "run": eids["c1"]}
    assert await api.data(LOOKUP, other_run, token=elsewhere) == {"project": {"candidate": None}}


PROJECT_PAGE = """
query($path: String!, $models: [String!], $order: CandidateOrder, $first: Int,
      $after: String) {
  project(path: $path) {
    candidates(models: $models, orderBy: $order, first: $first, after: $after) {
      totalCount
      edges { node { name model { name } } }
      pageInfo { hasNextPage endCursor }
    } } }
"""


async def test_project_candidates_span_its_models_in_one_order_and_pages(
    api: GraphQLApi,
) -> None:
    await seed_runs(api, spread={"c1": "alpha", "c2": "beta", "c3": "alpha", "c4": "beta"})
    path = api.project_path
    metric_order = {"field": "METRIC", "key": "acc", "direction": "DESC"}
    pages = []
    after = None
    while True:
        variables = {"path": path, "order": metric_order, "first": 3, "after": after}
        connection = (await api.data(PROJECT_PAGE, variables))["project"]["candidates"]
        pages.append([(n["name"], n["model"]["name"]) for n in edges_of(connection)])
        assert connection["totalCount"] == 4
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    assert pages == [
        [("c2", "beta"), ("c3", "alpha"), ("c1", "alpha")],
        [("c4", "beta")],
    ]
    only_beta = {"path": path, "models": ["beta"], "order": {"field": "NAME", "direction": "ASC"}}
    connection = (await api.data(PROJECT_PAGE, only_beta))["project"]["candidates"]
    assert connection["totalCount"] == 2
    assert [n["name"] for n in edges_of(connection)] == ["c2", "c4"]
    by_status = {"path": path, "order": {"field": "STATUS", "direction": "ASC"}}
    connection = (await api.data(PROJECT_PAGE, by_status))["project"]["candidates"]
    assert [n["name"] for n in edges_of(connection)] == ["c2", "c1", "c4", "c3"]


# --- What a page of candidates costs ----------------------------------------------------------

FIELDS_PAGE = """
query($path: String!, $first: Int!) {
  project(path: $path) { model(name: "nested") {
    candidates(first: $first, orderBy: {field: START_TIME, direction: ASC}) {
      edges { node {
        name createdAt
        params(names: ["lr"]) { name value }
        metadata(names: ["team"]) { name value }
        inputs { name context }
        parent { name }
        children(first: 2) { name }
      } }
    } } }
}
"""


async def test_a_page_of_fifty_with_the_new_fields_costs_the_statements_of_five(
    api: GraphQLApi,
) -> None:
    """Parents p0..p29 each with one child c<i> (nested under p<i>), 60 candidates in all;
    every one with params, a tag and a dataset input."""
    async with api.database.session() as session:
        project = await projects.get_project(session, path=api.project_path)
        model = await models.create_model(
            session, project=project, display_name="Nested", name="nested", actor=OPERATOR
        )
        for index in range(30):
            parent = await candidates.create_candidate(
                session, model=model, name=f"p{index}", start_time=2 * index, actor=OPERATOR
            )
            child = await candidates.create_candidate(
                session,
                model=model,
                name=f"c{index}",
                start_time=2 * index + 1,
                metadata={candidates.PARENT_RUN_TAG: parent.eid},
                actor=OPERATOR,
            )
            for row in (parent, child):
                await candidates.log_batch(
                    session,
                    candidate=row,
                    params={"lr": "0.1", "depth": "2"},
                    tags={"team": "x"},
                    actor=OPERATOR,
                )
                await candidates.record_inputs(
                    session,
                    candidate=row,
                    entries=[
                        (
                            "dataset_input",
                            "train:d1",
                            {
                                "dataset": {"name": "train", "digest": "d1"},
                                "tags": [{"key": "mlflow.data.context", "value": "training"}],
                            },
                        )
                    ],
                    actor=OPERATOR,
                )
    variables = {"path": api.project_path}
    await api.data(FIELDS_PAGE, {**variables, "first": 1})  # the token check is cached after this
    await jobs_settled(api.database)
    seen: dict[int, list[str]] = {}
    for size in (5, 50):
        with recorded() as statements:
            page = (await api.data(FIELDS_PAGE, {**variables, "first": size}))["project"]
        nodes = edges_of(page["model"]["candidates"])
        assert len(nodes) == size
        assert [node["name"] for node in nodes[:3]] == ["p0", "c0", "p1"]
        assert nodes[0]["parent"] is None and nodes[0]["children"] == [{"name": "c0"}]
        assert nodes[1]["parent"] == {"name": "p0"} and nodes[1]["children"] == []
        assert all(node["params"] == [{"name": "lr", "value": "0.1"}] for node in nodes)
        assert all(node["metadata"] == [{"name": "team", "value": "x"}] for node in nodes)
        assert all(node["inputs"] == [{"name": "train", "context": "training"}] for node in nodes)
        seen[size] = queries(statements)
    assert len(seen[5]) == len(seen[50]), seen
    # The project with the caller's role in it, the model, the page; then params,
    # metadata, inputs, parents and children of the page, one statement each.
    assert len(seen[50]) == 8, seen[50]


async def test_a_thousand_names_at_most_are_taken_by_a_read(api: GraphQLApi) -> None:
    """Lists of names are bounded: PostgreSQL takes at most 32,767 values a statement, and
    a list beyond the bound is the field's validation error, never an internal one."""
    await seed_runs(api)
    many = [f"name-{index}" for index in range(1001)]
    enough = many[:1000]
    column = """query($path: String!, $names: [String!]!) { project(path: $path) {
      model(name: "alpha") { candidates(first: 1) { edges { node {
        params(names: $names) { name } metadata(names: $names) { name } } } } } } }"""
    across = """query($path: String!, $names: [String!]!) { project(path: $path) {
      candidates(models: $names, first: 1) { totalCount } } }"""

    for document, field in ((column, "names"), (across, "models")):
        codes, named = await api.refusal(document, {"path": api.project_path, "names": many})
        assert (codes[:1], named) == (["VALIDATION_ERROR"], field)
    shown = await api.data(column, {"path": api.project_path, "names": [*enough[:-1], "lr"]})
    [node] = edges_of(shown["project"]["model"]["candidates"])
    assert node == {"params": [{"name": "lr"}], "metadata": []}
    counted = await api.data(across, {"path": api.project_path, "names": [*enough[:-1], "alpha"]})
    assert counted["project"]["candidates"]["totalCount"] == len(RUNS)


async def test_children_are_listed_up_to_a_thousand(api: GraphQLApi) -> None:
    await seed_runs(api)
    codes, field = await api.refusal(
        """query($path: String!) { project(path: $path) { model(name: "alpha") {
             candidates(first: 1) { edges { node { children(first: 1001) { name } } } } } } }""",
        {"path": api.project_path},
    )
    assert (codes, field) == (["VALIDATION_ERROR"], "first")


# --- What the mlflow client logs ----------------------------------------------------------------

RUN = """query($run: String!) { project(path: "default") { candidate(runId: $run) {
  name
  inputs { name digest sourceType source schema profile context tags { name value } }
  parent { eid }
  children { eid name parent { eid } }
  firstChild: children(first: 1) { name }
} } }"""


def test_a_pandas_dataset_logged_with_log_input_is_an_input(
    server: LiveServer, client: MlflowClient
) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0.0, 1.0, 0.0]})
    dataset = from_pandas(frame, source="/data/train.csv", name="train", targets="y")
    mlflow.set_experiment("with_inputs")
    with mlflow.start_run(run_name="fit") as run:
        mlflow.log_input(dataset, context="training", tags={"split": "train"})
    logged = dataset._to_mlflow_entity()
    found = server.ask(RUN, run=run.info.run_id)["project"]["candidate"]
    assert found["inputs"] == [
        {
            "name": "train",
            "digest": logged.digest,
            "sourceType": "local",
            "source": '{"uri": "/data/train.csv"}',
            "schema": logged.schema,
            "profile": '{"num_rows": 3, "num_elements": 6}',
            "context": "training",
            "tags": [
                {"name": "mlflow.data.context", "value": "training"},
                {"name": "split", "value": "train"},
            ],
        }
    ]
    assert '"name": "x"' in found["inputs"][0]["schema"]


def test_nested_runs_are_parent_and_children_and_deleted_runs_show_on_request(
    server: LiveServer, client: MlflowClient
) -> None:
    mlflow.set_experiment("sweep")
    with mlflow.start_run(run_name="search") as parent:
        with mlflow.start_run(run_name="trial-1", nested=True) as first:
            pass
        with mlflow.start_run(run_name="trial-2", nested=True) as second:
            pass
    parent_id, first_id, second_id = (r.info.run_id for r in (parent, first, second))

    found = server.ask(RUN, run=parent_id)["project"]["candidate"]
    assert found["parent"] is None
    assert found["children"] == [
        {"eid": first_id, "name": "trial-1", "parent": {"eid": parent_id}},
        {"eid": second_id, "name": "trial-2", "parent": {"eid": parent_id}},
    ]
    assert found["firstChild"] == [{"name": "trial-1"}]
    assert server.ask(RUN, run=first_id)["project"]["candidate"]["parent"] == {"eid": parent_id}

    client.delete_run(second_id)
    found = server.ask(RUN, run=parent_id)["project"]["candidate"]
    assert [child["name"] for child in found["children"]] == ["trial-1"]
    listed = {
        lifecycle: lifecycle_names(server, lifecycle) for lifecycle in ("ACTIVE", "DELETED", "ALL")
    }
    assert listed == {
        "ACTIVE": ["search", "trial-1"],
        "DELETED": ["trial-2"],
        "ALL": ["search", "trial-1", "trial-2"],
    }
    # The deleted child still names its parent, and is found by its run id.
    deleted = server.ask(RUN, run=second_id)["project"]["candidate"]
    assert deleted["parent"] == {"eid": parent_id}

    client.restore_run(second_id)
    assert lifecycle_names(server, "ACTIVE") == ["search", "trial-1", "trial-2"]


def lifecycle_names(server: LiveServer, lifecycle: str) -> list[str]:
    found = server.ask(
        """query($lifecycle: CandidateLifecycle!) { project(path: "default") {
             model(name: "sweep") { candidates(filter: {lifecycle: $lifecycle},
               orderBy: {field: START_TIME, direction: ASC}) { edges { node { name } } } } } }""",
        lifecycle=lifecycle,
    )
    return [node["name"] for node in edges_of(found["project"]["model"]["candidates"])]
