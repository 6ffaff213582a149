"""Descriptions are capped at 10,000 characters at every door, their HTML is rendered
once when they are written (never when read), and writing the slowest Markdown within
the cap keeps the server answering."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from markdown_it import MarkdownIt
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidValueError
from app.models import Model, ModelVersion, Project
from app.services import models, projects, versions
from app.services.actor import OPERATOR
from app.services.validation import MAX_DESCRIPTION_LENGTH
from tests.graphql_support import ERROR_FIELDS, GraphQLApi, graphql_api
from tests.live_server import LiveServer

AT_LIMIT = "d" * MAX_DESCRIPTION_LENGTH
OVER_LIMIT = "d" * (MAX_DESCRIPTION_LENGTH + 1)

# Markdown a model card holds, and what the renderer that ran at every read made of it.
MODEL_CARD = """# Fraud detector

A **gradient-boosted** model, trained on `transactions_2024`.

- precision: 0.93
- recall: 0.88

See [the report](https://example.com/report) and <https://example.com>.
<script>alert(1)</script> [bad](javascript:alert(1))

```python
model.predict(features)
```
"""
READ_TIME_RENDERER = MarkdownIt("commonmark", {"html": False})

# The slowest inputs found for markdown-it within the cap: link and image openers between
# emphasis markers and entities, which it rescans as nested labels (about 0.3 s each).
WORST_CASES = [
    (unit * (MAX_DESCRIPTION_LENGTH // len(unit) + 1))[:MAX_DESCRIPTION_LENGTH]
    for unit in ("**![", "&![", "![*[", "[", "*_", "a\n")
]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- The service layer, on both databases ------------------------------------------------


async def test_every_service_refuses_a_description_over_the_limit_and_keeps_one_at_it(
    session: AsyncSession, project: Project
) -> None:
    model = await models.create_model(
        session, project=project, display_name="Capped", description=AT_LIMIT, actor=OPERATOR
    )
    version = await versions.create_version(
        session, model=model, description=AT_LIMIT, actor=OPERATOR
    )
    writes: dict[str, Callable[[], Awaitable[object]]] = {
        "create model": lambda: models.create_model(
            session,
            project=project,
            display_name="Too long",
            description=OVER_LIMIT,
            actor=OPERATOR,
        ),
        "update model": lambda: models.update_model(
            session, model=model, description=OVER_LIMIT, actor=OPERATOR
        ),
        "create version": lambda: versions.create_version(
            session, model=model, description=OVER_LIMIT, actor=OPERATOR
        ),
        "update version": lambda: versions.update_version(
            session, version=version, description=OVER_LIMIT, actor=OPERATOR
        ),
        "create project": lambda: projects.create_project(
            session, path="too-long", description=OVER_LIMIT, actor=OPERATOR
        ),
        "update project": lambda: projects.update_project(
            session, project=project, actor=OPERATOR, description=OVER_LIMIT
        ),
    }
    for door, write in writes.items():
        with pytest.raises(InvalidValueError) as refused:
            await write()
        assert refused.value.field == "description", door
        assert f"the limit is {MAX_DESCRIPTION_LENGTH}" in str(refused.value), door

    assert (model.description, version.description) == (AT_LIMIT, AT_LIMIT)
    assert model.description_html == version.description_html == f"<p>{AT_LIMIT}</p>\n"
    assert await session.scalar(sa.select(sa.func.count()).select_from(ModelVersion)) == 1
    assert await session.scalar(sa.select(Model.id).where(Model.display_name == "Too long")) is None


async def test_the_html_is_rendered_when_written_as_the_read_time_renderer_made_it(
    session: AsyncSession, project: Project
) -> None:
    model = await models.create_model(
        session, project=project, display_name="Card", description=MODEL_CARD, actor=OPERATOR
    )
    version = await versions.create_version(
        session, model=model, description=MODEL_CARD, actor=OPERATOR
    )
    expected = READ_TIME_RENDERER.render(MODEL_CARD)
    assert model.description_html == version.description_html == expected
    assert "<strong>gradient-boosted</strong>" in expected
    assert "&lt;script&gt;" in expected and 'href="javascript' not in expected

    await models.update_model(session, model=model, description="*changed*", actor=OPERATOR)
    await versions.update_version(session, version=version, description="", actor=OPERATOR)
    assert model.description_html == "<p><em>changed</em></p>\n"
    assert (version.description, version.description_html) == ("", "")

    # Changing something else leaves the description and its HTML alone.
    await models.update_model(session, model=model, display_name="Card 2", actor=OPERATOR)
    assert model.description_html == "<p><em>changed</em></p>\n"


# --- GraphQL --------------------------------------------------------------------------------


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[GraphQLApi]:
    async with graphql_api(database_url, tmp_path) as served:
        yield served


async def _mutate(api: GraphQLApi, name: str, arguments: dict[str, Any], selection: str) -> Any:
    input_type = name[0].upper() + name[1:] + "Input"
    found = await api.data(
        f"mutation($input: {input_type}!) {{ {name}(input: $input) {{ {selection} }} }}",
        {"input": arguments},
    )
    return found[name]


async def test_graphql_answers_a_description_over_the_limit_with_a_validation_error(
    api: GraphQLApi,
) -> None:
    model_fields = f"{ERROR_FIELDS} ... on Model {{ id description }}"
    version_fields = f"{ERROR_FIELDS} ... on ModelVersion {{ id description }}"
    project_fields = f"{ERROR_FIELDS} ... on Project {{ path description }}"
    model = await _mutate(
        api,
        "modelCreate",
        {"project": api.project_path, "displayName": "Capped", "description": AT_LIMIT},
        model_fields,
    )
    assert model["description"] == AT_LIMIT
    version = await _mutate(
        api, "modelVersionCreate", {"modelId": model["id"], "description": "v1"}, version_fields
    )
    refusals = [
        ("modelCreate", {"project": api.project_path, "displayName": "Long"}, model_fields),
        ("modelUpdate", {"id": model["id"]}, model_fields),
        ("modelVersionCreate", {"modelId": model["id"]}, version_fields),
        ("modelVersionUpdate", {"id": version["id"]}, version_fields),
        ("projectCreate", {"path": "long"}, project_fields),
        ("projectUpdate", {"path": api.project_path}, project_fields),
    ]
    for name, arguments, selection in refusals:
        result = await _mutate(api, name, {**arguments, "description": OVER_LIMIT}, selection)
        assert (result["__typename"], result["field"]) == ("ValidationError", "description"), name

    read_back = await api.data(
        "query($id: ID!) { model(id: $id) { description versionCount } }", {"id": model["id"]}
    )
    assert read_back["model"] == {"description": AT_LIMIT, "versionCount": 1}


async def test_graphql_reads_the_stored_html_and_never_renders(api: GraphQLApi) -> None:
    model = await _mutate(
        api,
        "modelCreate",
        {"project": api.project_path, "displayName": "Card", "description": MODEL_CARD},
        f"{ERROR_FIELDS} ... on Model {{ id descriptionHtml }}",
    )
    version = await _mutate(
        api,
        "modelVersionCreate",
        {"modelId": model["id"], "description": MODEL_CARD},
        f"{ERROR_FIELDS} ... on ModelVersion {{ id descriptionHtml }}",
    )
    expected = READ_TIME_RENDERER.render(MODEL_CARD)
    assert model["descriptionHtml"] == version["descriptionHtml"] == expected

    # What a read answers is the stored column, whatever the Markdown beside it says.
    async with api.database.session() as session:
        for table in (Model, ModelVersion):
            await session.execute(sa.update(table).values(description_html="<p>stored</p>"))
    found = await api.data(
        "query($id: ID!) { model(id: $id) { descriptionHtml latestVersion { descriptionHtml } } }",
        {"id": model["id"]},
    )
    assert found["model"] == {
        "descriptionHtml": "<p>stored</p>",
        "latestVersion": {"descriptionHtml": "<p>stored</p>"},
    }


# --- MLflow, through the real client against a live server --------------------------------


def test_mlflow_answers_a_description_over_the_limit_with_invalid_parameter_value(
    server: LiveServer, client: MlflowClient
) -> None:
    name = unique("Capped")
    client.create_registered_model(name, description=AT_LIMIT)
    client.create_model_version(name, source="s3://bucket/model", description=AT_LIMIT)
    refusals: dict[str, Callable[[], object]] = {
        "create-registered-model": lambda: client.create_registered_model(
            unique("Long"), description=OVER_LIMIT
        ),
        "update-registered-model": lambda: client.update_registered_model(
            name, description=OVER_LIMIT
        ),
        "create-model-version": lambda: client.create_model_version(
            name, source="s3://bucket/model", description=OVER_LIMIT
        ),
        "update-model-version": lambda: client.update_model_version(
            name, "1", description=OVER_LIMIT
        ),
    }
    for endpoint, call in refusals.items():
        with pytest.raises(MlflowException) as refused:
            call()
        assert refused.value.error_code == "INVALID_PARAMETER_VALUE", endpoint
        assert f"the limit is {MAX_DESCRIPTION_LENGTH}" in refused.value.message, endpoint

    raw = httpx.patch(
        f"{server.url}/api/2.0/mlflow/registered-models/update",
        json={"name": name, "description": OVER_LIMIT},
        headers={"Authorization": f"Bearer {server.admin_token}"},
    )
    assert (raw.status_code, raw.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")

    assert client.get_registered_model(name).description == AT_LIMIT
    assert client.get_model_version(name, "1").description == AT_LIMIT
    assert [version.version for version in client.search_model_versions(f"name='{name}'")] == ["1"]


CREATE_MODEL = (
    "mutation($input: ModelCreateInput!) { modelCreate(input: $input) {"
    f" {ERROR_FIELDS} ... on Model {{ id }} }} }}"
)
READ_MODEL = "query($id: ID!) { model(id: $id) { description descriptionHtml } }"


def test_healthz_answers_within_half_a_second_while_the_slowest_markdown_is_written(
    server: LiveServer,
) -> None:
    """A writer stores each worst case on a model and reads it back three times, after
    trying one 20 times the limit (markdown-it would take seconds over it), while the
    probe keeps asking `/healthz`: every request is answered, every probe within 0.5 s."""
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    done = threading.Event()
    refusals: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    failures: list[BaseException] = []

    def create(writer: httpx.Client, description: str) -> dict[str, Any]:
        variables = {"project": "default", "displayName": unique("Worst")}
        body = {
            "query": CREATE_MODEL,
            "variables": {"input": {**variables, "description": description}},
        }
        created: dict[str, Any] = writer.post("/graphql", json=body).json()["data"]["modelCreate"]
        return created

    def write_and_read() -> None:
        try:
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as writer:
                refusals.append(create(writer, WORST_CASES[0] * 20))
                for text in WORST_CASES:
                    model_id = create(writer, text)["id"]
                    for _ in range(3):
                        body = {"query": READ_MODEL, "variables": {"id": model_id}}
                        answers.append(writer.post("/graphql", json=body).json()["data"]["model"])
        except BaseException as failure:  # reported by the test thread below
            failures.append(failure)
        finally:
            done.set()

    writer = threading.Thread(target=write_and_read)
    slowest = 0.0
    probes = 0
    with httpx.Client(base_url=server.url, timeout=10) as probe:
        writer.start()
        while not done.is_set():
            started = time.monotonic()
            assert probe.get("/healthz").status_code == 200
            slowest = max(slowest, time.monotonic() - started)
            probes += 1
            time.sleep(0.02)
    writer.join()

    assert failures == []
    assert [(refusal["__typename"], refusal["field"]) for refusal in refusals] == [
        ("ValidationError", "description")
    ]
    expected = [text for text in WORST_CASES for _ in range(3)]
    assert [answer["description"] for answer in answers] == expected
    assert [answer["descriptionHtml"] for answer in answers] == [
        READ_TIME_RENDERER.render(text) for text in expected
    ]
    assert probes > 0
    assert slowest < 0.5, f"/healthz took {slowest:.2f} s while descriptions were written"
