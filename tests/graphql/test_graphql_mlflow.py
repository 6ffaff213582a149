"""One rule, two doors: what the `mlflow` client logs shows in GraphQL, and a version
promoted in GraphQL loads with `mlflow.pyfunc.load_model`, on a live modelreg."""

from __future__ import annotations

from collections.abc import Iterator

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tests.live_server import LiveServer

X = np.array([[0.0, 0.2], [0.1, 0.0], [0.3, 0.1], [1.0, 0.9], [0.9, 1.2], [1.1, 1.0]])
Y = np.array([0, 0, 0, 1, 1, 1])

CANDIDATES = """
query($name: String!) {
  project(path: "default") {
    model(name: $name) {
      id
      candidates(orderBy: {field: METRIC, key: "accuracy", direction: DESC}) {
        totalCount
        edges { node { id eid name status
          params { name value }
          metrics { name value step }
          metadata { name value }
          artifacts { path } } }
      }
    }
  }
}
"""


@pytest.fixture
def tracking(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", server.admin_token)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(server.url)
    yield
    if mlflow.active_run():
        mlflow.end_run()


def test_runs_logged_by_mlflow_are_candidates_and_a_promoted_one_loads(
    server: LiveServer, tracking: None
) -> None:
    mlflow.set_experiment("churn_training")
    classifiers = {}
    for c_value, accuracy in ((0.1, 0.71), (1.0, 0.93), (10.0, 0.88)):
        with mlflow.start_run(run_name=f"c-{c_value}") as run:
            mlflow.log_param("C", c_value)
            for step, value in enumerate((accuracy - 0.2, accuracy - 0.1, accuracy)):
                mlflow.log_metric("accuracy", value, step=step)
            mlflow.set_tag("team", "retention")
            classifier = LogisticRegression(C=c_value).fit(X, Y)
            mlflow.sklearn.log_model(classifier, name="model")
            classifiers[run.info.run_id] = classifier

    found = server.ask(CANDIDATES, name="churn_training")["project"]["model"]
    connection = found["candidates"]
    assert connection["totalCount"] == 3
    nodes = [edge["node"] for edge in connection["edges"]]
    assert [node["name"] for node in nodes] == ["c-1.0", "c-10.0", "c-0.1"]
    best = nodes[0]
    assert best["status"] == "FINISHED"
    assert best["params"] == [{"name": "C", "value": "1.0"}]
    assert best["metrics"] == [{"name": "accuracy", "value": 0.93, "step": 2}]
    assert {"name": "team", "value": "retention"} in best["metadata"]

    promoted = server.ask(
        """mutation($model: ID!, $candidate: ID!) {
          modelVersionCreate(input: {modelId: $model, candidateId: $candidate, version: "1.0.0"}) {
            __typename
            ... on ModelVersion { id number version source candidate { eid } }
            ... on Error { message }
          } }""",
        model=found["id"],
        candidate=best["id"],
    )["modelVersionCreate"]
    assert promoted["__typename"] == "ModelVersion", promoted
    assert promoted["version"] == "1.0.0"
    assert promoted["candidate"]["eid"] == best["eid"]
    assert promoted["source"].startswith("models:/m-")
    aliased = server.ask(
        """mutation($version: ID!) {
          aliasSet(input: {versionId: $version, alias: "champion"}) {
            __typename ... on ModelVersion { aliases } } }""",
        version=promoted["id"],
    )["aliasSet"]
    assert aliased == {"__typename": "ModelVersion", "aliases": ["champion"]}

    expected = classifiers[best["eid"]].predict(X)
    for uri in ("models:/churn_training/1", "models:/churn_training@champion"):
        loaded = mlflow.pyfunc.load_model(uri)
        assert list(loaded.predict(X)) == list(expected), uri
