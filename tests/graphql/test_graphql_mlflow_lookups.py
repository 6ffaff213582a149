"""The lookups that turn the ids in MLflow's printed links into objects, on SQLite and
PostgreSQL: a project's model by its iid (MLflow's experiment id) or its display name
(MLflow's registered model name) as well as by its name, and a model's version by its
number (MLflow's version) as well as by its semver; each takes exactly one key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.graphql_support import ERROR_FIELDS, GraphQLApi, graphql_api

MODEL_QUERY = """
query($path: String!, $name: String, $iid: Int, $displayName: String) {
  project(path: $path) { model(name: $name, iid: $iid, displayName: $displayName) { name iid } }
}
"""

VERSION_QUERY = """
query($path: String!, $version: String, $number: Int) {
  project(path: $path) {
    model(name: "churn") { version(version: $version, number: $number) { number version } }
  }
}
"""


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[GraphQLApi]:
    """The model `churn` (the project's first: iid 1) with version 2.5.0, number 1."""
    async with graphql_api(database_url, tmp_path) as served:
        created = await served.data(
            f"""mutation($project: String!) {{
              modelCreate(input: {{project: $project, displayName: "Churn"}}) {{
                {ERROR_FIELDS} ... on Model {{ id }} }} }}""",
            {"project": served.project_path},
        )
        version = await served.data(
            f"""mutation($model: ID!) {{
              modelVersionCreate(input: {{modelId: $model, version: "2.5.0"}}) {{
                {ERROR_FIELDS} ... on ModelVersion {{ number }} }} }}""",
            {"model": created["modelCreate"]["id"]},
        )
        assert version["modelVersionCreate"] == {"__typename": "ModelVersion", "number": 1}
        yield served


async def test_a_model_is_found_by_its_iid_its_name_or_its_display_name(
    api: GraphQLApi,
) -> None:
    for key in ({"iid": 1}, {"name": "churn"}, {"displayName": "Churn"}):
        found = await api.data(MODEL_QUERY, {"path": api.project_path, **key})
        assert found == {"project": {"model": {"name": "churn", "iid": 1}}}
    missing = await api.data(MODEL_QUERY, {"path": api.project_path, "iid": 99})
    assert missing == {"project": {"model": None}}


async def test_a_model_lookup_takes_exactly_one_key(api: GraphQLApi) -> None:
    for key in ({}, {"iid": 1, "name": "churn"}, {"name": "churn", "displayName": "Churn"}):
        codes, field = await api.refusal(MODEL_QUERY, {"path": api.project_path, **key})
        assert (codes, field) == (["VALIDATION_ERROR"], "name")


async def test_a_version_is_found_by_its_number_or_its_semver(api: GraphQLApi) -> None:
    for key in ({"number": 1}, {"version": "2.5.0"}):
        found = await api.data(VERSION_QUERY, {"path": api.project_path, **key})
        assert found == {"project": {"model": {"version": {"number": 1, "version": "2.5.0"}}}}
    missing = await api.data(VERSION_QUERY, {"path": api.project_path, "number": 2})
    assert missing == {"project": {"model": {"version": None}}}


async def test_a_version_lookup_takes_exactly_one_key(api: GraphQLApi) -> None:
    for key in ({}, {"number": 1, "version": "2.5.0"}):
        codes, field = await api.refusal(VERSION_QUERY, {"path": api.project_path, **key})
        assert (codes, field) == (["VALIDATION_ERROR"], "version")
