"""MLflow's search language: the parser on its own, then the compiled SQL against real
SQLite and PostgreSQL databases, asserting the exact rows and their exact order."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidValueError
from app.models import (
    Candidate,
    CandidateStatus,
    LifecycleState,
    Membership,
    Model,
    ModelVersion,
    Project,
    Role,
    User,
)
from app.search import grammar, paging, sql
from app.search import models as model_search
from app.search import runs as run_search
from app.search import versions as version_search
from app.search.grammar import (
    EXPERIMENT_SEARCH,
    MODEL_VERSION_SEARCH,
    REGISTERED_MODEL_SEARCH,
    RUN_SEARCH,
    Comparison,
    OrderBy,
    SearchError,
)
from app.services import candidates, models, versions
from app.services.actor import OPERATOR, Actor
from app.services.candidates import MetricPoint

# --- Parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        (None, []),
        ("", []),
        ("   ", []),
        ("metrics.acc > 0.5", [Comparison("metric", "acc", ">", 0.5)]),
        ("metric.acc>=1", [Comparison("metric", "acc", ">=", 1.0)]),
        ("metrics.loss < -2.5e-3", [Comparison("metric", "loss", "<", -0.0025)]),
        ("metrics.loss <= +.5", [Comparison("metric", "loss", "<=", 0.5)]),
        ("metrics.x != 1E3", [Comparison("metric", "x", "!=", 1000.0)]),
        ("metrics.x = 1e999", [Comparison("metric", "x", "=", math.inf)]),
        ('metrics."my metric" = 2', [Comparison("metric", "my metric", "=", 2.0)]),
        ("metrics.`a.b c` = 2", [Comparison("metric", "a.b c", "=", 2.0)]),
        ("metrics.train/loss_1 < 3", [Comparison("metric", "train/loss_1", "<", 3.0)]),
        ("params.p = 'a'", [Comparison("param", "p", "=", "a")]),
        ('param.p = "a b"', [Comparison("param", "p", "=", "a b")]),
        ("parameter.p != 'it''s'", [Comparison("param", "p", "!=", "it's")]),
        ('parameters.p = "say ""hi"""', [Comparison("param", "p", "=", 'say "hi"')]),
        ("params.model-type like 'x%'", [Comparison("param", "model-type", "LIKE", "x%")]),
        ("params.p IS NULL", [Comparison("param", "p", "IS NULL", None)]),
        ("params.p is not null", [Comparison("param", "p", "IS NOT NULL", None)]),
        ("tags.`k` LIKE '%x%'", [Comparison("tag", "k", "LIKE", "%x%")]),
        ("tag.k ILIKE 'X'", [Comparison("tag", "k", "ILIKE", "X")]),
        ("tags.mlflow.runName = 'r'", [Comparison("tag", "mlflow.runName", "=", "r")]),
        ("tags.'quoted key' = 'v'", [Comparison("tag", "quoted key", "=", "v")]),
        ("tags.p LIKE 'a\\%'", [Comparison("tag", "p", "LIKE", "a\\%")]),
        (
            "attributes.status IN ('FINISHED', \"FAILED\",)",
            [Comparison("attribute", "status", "IN", ("FINISHED", "FAILED"))],
        ),
        (
            "attribute.status NOT IN ('KILLED')",
            [Comparison("attribute", "status", "NOT IN", ("KILLED",))],
        ),
        ("run_name = 'r'", [Comparison("attribute", "run_name", "=", "r")]),
        ("attributes.run_name = 'r'", [Comparison("attribute", "run_name", "=", "r")]),
        ("attributes.`run name` = 'r'", [Comparison("attribute", "run_name", "=", "r")]),
        ('`Run Name` = "r"', [Comparison("attribute", "run_name", "=", "r")]),
        ('"Run name" = "r"', [Comparison("attribute", "run_name", "=", "r")]),
        ("run.run_id IN ('a', 'b')", [Comparison("attribute", "run_id", "IN", ("a", "b"))]),
        ("attr.run_id = 'a'", [Comparison("attribute", "run_id", "=", "a")]),
        (
            "start_time >= 1700000000000",
            [Comparison("attribute", "start_time", ">=", 1700000000000)],
        ),
        ("created < 1.7e12", [Comparison("attribute", "start_time", "<", 1700000000000)]),
        ("Created = 5", [Comparison("attribute", "start_time", "=", 5)]),
        ("end_time != -1", [Comparison("attribute", "end_time", "!=", -1)]),
        ("user_id = 'alice'", [Comparison("attribute", "user_id", "=", "alice")]),
        ("datasets.digest IN ('d1')", [Comparison("dataset", "digest", "IN", ("d1",))]),
        (
            "metrics.a > 1 AND params.b = 'x' and tags.c != 'y'",
            [
                Comparison("metric", "a", ">", 1.0),
                Comparison("param", "b", "=", "x"),
                Comparison("tag", "c", "!=", "y"),
            ],
        ),
        (
            "  params.p='a'AND  metrics.m<1  ",
            [Comparison("param", "p", "=", "a"), Comparison("metric", "m", "<", 1.0)],
        ),
    ],
)
def test_run_filters_parse(filter_string: str | None, expected: list[Comparison]) -> None:
    assert grammar.parse_filter(filter_string, RUN_SEARCH) == expected


@pytest.mark.parametrize(
    ("filter_string", "message"),
    [
        ("metrics.acc", "expected a comparator (=, !=, <, <=, >, >=, LIKE"),
        ("metrics.acc", "after metrics.acc (at the end)"),
        ("metrics.acc == 1", "'==' is not a comparator; use '=' (at character 13)"),
        ("metrics.acc <> 1", "'<>' is not a comparator; use '!='"),
        ("metrics.acc ~ 1", "expected a comparator"),
        ("metrics.acc LIKE '1'", "invalid comparator 'LIKE' for metric 'acc'; expected one of"),
        ("metrics.acc IS NULL", "invalid comparator 'IS NULL' for metric 'acc'"),
        ("metrics.acc > 'a'", "expected a numeric value for metric 'acc', got 'a'"),
        ("metrics.acc > 1x", "invalid number '1x'"),
        ("metrics.acc > 1.2.3", "invalid number"),
        ("metrics.acc >", "expected a value after > (at the end)"),
        ("metrics.acc > -", "expected a value after >, got '-'"),
        ("params.p > 'a'", "invalid comparator '>' for param 'p'; expected one of =, !=, LIKE"),
        ("params.p = 1", "expected a quoted string value for param 'p' (e.g. 'my-value'), got 1"),
        ("params.p = abc", "expected a quoted string value for param 'p'"),
        ("params.p = NULL", "compare with NULL using IS NULL or IS NOT NULL"),
        ("params.p IN ('a')", "invalid comparator 'IN' for param 'p'"),
        ("params.p IS 'a'", "expected NULL or NOT NULL after IS"),
        ("params.p NOT LIKE 'a'", "expected IN after NOT"),
        ("params.p = 'abc", "unterminated single-quoted text (at character 12)"),
        ('params.p = "abc', "unterminated double-quoted text"),
        ("params.`p = 'a'", "unterminated backtick-quoted text (at character 8)"),
        ("params.p LIKE 'a\\'", "the pattern ends with a lone backslash"),
        ("params. = 'a'", "expected a name after 'params.'"),
        ("params.`` = 'a'", "the name must not be empty"),
        ("params.p = ('a')", "a list can only follow IN or NOT IN, not ="),
        ("foo.x = 'a'", "invalid entity type 'foo' for runs; valid prefixes are attr,"),
        ("Metrics.x > 1", "invalid entity type 'Metrics'"),
        ("attributes.foo = 'a'", "invalid attribute key 'foo' for runs; valid keys are"),
        ("lifecycle_stage = 'active'", "invalid attribute key 'lifecycle_stage'"),
        ("attributes.artifact_uri = 'x'", "cannot be searched or sorted by artifact_uri"),
        ("datasets.size = 'x'", "invalid dataset key 'size'; valid keys are context, digest"),
        ("status > 'A'", "invalid comparator '>' for attribute 'status'"),
        ("status IN 'FINISHED'", "IN expects a parenthesized list of quoted strings, got 'FIN"),
        ("status IN ()", "expected a non-empty list of quoted strings"),
        ("status IN ('a' 'b')", "expected ',' or ')' in the list, got \"'b'\""),
        ("status IN ('a', 1)", "lists hold quoted strings, got '1'"),
        ("status IN ('a'", "unterminated list"),
        ("start_time > 'a'", "expected a numeric value for attribute 'start_time'"),
        ("start_time > 1.5", "expected an integer value for attribute 'start_time', got 1.5"),
        ("start_time LIKE '1'", "invalid comparator 'LIKE' for attribute 'start_time'"),
        ("metrics.a > 1 OR metrics.b > 1", "only be joined with AND (at character 15)"),
        ("metrics.a > 1 metrics.b > 1", "expected AND between comparisons, got 'metrics.b'"),
        ("metrics.a > 1 AND", "expected a comparison after AND (at the end)"),
        ("(metrics.a > 1)", "parentheses are not supported"),
        ("'a' = params.p", "expected an identifier such as metrics.<name>"),
        ("AND metrics.a > 1", "invalid attribute key 'AND' for runs"),
    ],
)
def test_bad_run_filters_say_what_is_wrong_and_where(filter_string: str, message: str) -> None:
    with pytest.raises(SearchError) as raised:
        grammar.parse_filter(filter_string, RUN_SEARCH)
    assert message in raised.value.message
    assert raised.value.message.startswith(f"Invalid filter {filter_string!r}: ")
    assert raised.value.field == "filter"
    assert isinstance(raised.value, InvalidValueError)


@pytest.mark.parametrize(
    ("schema", "filter_string", "expected"),
    [
        (EXPERIMENT_SEARCH, "name = 'x'", Comparison("attribute", "name", "=", "x")),
        (
            EXPERIMENT_SEARCH,
            "attributes.name LIKE 'x%'",
            Comparison("attribute", "name", "LIKE", "x%"),
        ),
        (EXPERIMENT_SEARCH, "creation_time > 5", Comparison("attribute", "creation_time", ">", 5)),
        (EXPERIMENT_SEARCH, "tags.k IS NULL", Comparison("tag", "k", "IS NULL", None)),
        (REGISTERED_MODEL_SEARCH, "name ILIKE 'x'", Comparison("attribute", "name", "ILIKE", "x")),
        (
            REGISTERED_MODEL_SEARCH,
            "tag.`mlflow.prompt.is_prompt` != 'true'",
            Comparison("tag", "mlflow.prompt.is_prompt", "!=", "true"),
        ),
        (MODEL_VERSION_SEARCH, "run_id IN ('a')", Comparison("attribute", "run_id", "IN", ("a",))),
        (
            MODEL_VERSION_SEARCH,
            "version_number >= 2",
            Comparison("attribute", "version_number", ">=", 2),
        ),
        (
            MODEL_VERSION_SEARCH,
            "source_path = 's3://b'",
            Comparison("attribute", "source_path", "=", "s3://b"),
        ),
    ],
)
def test_registry_and_experiment_filters_parse(
    schema: grammar.SearchSchema, filter_string: str, expected: Comparison
) -> None:
    assert grammar.parse_filter(filter_string, schema) == [expected]


@pytest.mark.parametrize(
    ("schema", "filter_string", "message"),
    [
        (EXPERIMENT_SEARCH, "metrics.x > 1", "invalid entity type 'metrics' for experiments"),
        (EXPERIMENT_SEARCH, "experiment_id = '1'", "invalid attribute key 'experiment_id'"),
        (EXPERIMENT_SEARCH, "name IN ('a')", "invalid comparator 'IN' for attribute 'name'"),
        (EXPERIMENT_SEARCH, "creation_time > 'a'", "expected a numeric value"),
        (REGISTERED_MODEL_SEARCH, "params.x = 'a'", "invalid entity type 'params'"),
        (REGISTERED_MODEL_SEARCH, "tags.x IS NULL", "invalid comparator 'IS NULL' for tag 'x'"),
        (REGISTERED_MODEL_SEARCH, "run_id = 'a'", "invalid attribute key 'run_id'"),
        (MODEL_VERSION_SEARCH, "run_id NOT IN ('a')", "invalid comparator 'NOT IN'"),
        (MODEL_VERSION_SEARCH, "name IN ('a')", "invalid comparator 'IN' for attribute 'name'"),
        (MODEL_VERSION_SEARCH, "version_number > 1.5", "expected an integer value"),
    ],
)
def test_bad_registry_and_experiment_filters(
    schema: grammar.SearchSchema, filter_string: str, message: str
) -> None:
    with pytest.raises(SearchError, match="Invalid filter") as raised:
        grammar.parse_filter(filter_string, schema)
    assert message in raised.value.message


@pytest.mark.parametrize(
    ("clauses", "expected"),
    [
        (None, []),
        (["metrics.acc"], [OrderBy("metric", "acc", True)]),
        (["metrics.`my metric` DESC"], [OrderBy("metric", "my metric", False)]),
        (['params."p" asc'], [OrderBy("param", "p", True)]),
        (["  tags.t   Desc "], [OrderBy("tag", "t", False)]),
        (["created"], [OrderBy("attribute", "start_time", True)]),
        (["attributes.`Run Name` DESC"], [OrderBy("attribute", "run_name", False)]),
        (
            ["run_id", "attr.end_time DESC"],
            [OrderBy("attribute", "run_id", True), OrderBy("attribute", "end_time", False)],
        ),
    ],
)
def test_run_order_by_parses(clauses: list[str] | None, expected: list[OrderBy]) -> None:
    assert grammar.parse_order_by(clauses, RUN_SEARCH) == expected


@pytest.mark.parametrize(
    ("schema", "clauses", "message"),
    [
        (RUN_SEARCH, [""], "Invalid order_by clause '': expected a column to order by"),
        (RUN_SEARCH, ["metrics.x UP"], "expected ASC or DESC after the column, got 'UP'"),
        (RUN_SEARCH, ["metrics.x DESC LIMIT"], "unexpected 'LIMIT' after DESC"),
        (RUN_SEARCH, ["datasets.name"], "runs cannot be ordered by datasets"),
        (RUN_SEARCH, ["attributes.foo"], "invalid order_by key 'foo' for runs"),
        (RUN_SEARCH, ["artifact_uri"], "cannot be searched or sorted by artifact_uri"),
        (RUN_SEARCH, ["metrics.a", "metric.a DESC"], "order_by contains duplicate fields"),
        (RUN_SEARCH, ["created", "start_time"], "order_by contains duplicate fields"),
        (EXPERIMENT_SEARCH, ["tags.t"], "experiments cannot be ordered by tags"),
        (EXPERIMENT_SEARCH, ["creation_timestamp"], "invalid order_by key 'creation_timestamp'"),
        (REGISTERED_MODEL_SEARCH, ["timestamp", "last_updated_timestamp"], "duplicate fields"),
        (MODEL_VERSION_SEARCH, ["run_id"], "invalid order_by key 'run_id' for model versions"),
    ],
)
def test_bad_order_by(schema: grammar.SearchSchema, clauses: list[str], message: str) -> None:
    with pytest.raises(SearchError) as raised:
        grammar.parse_order_by(clauses, schema)
    assert message in raised.value.message
    assert raised.value.field == "order_by"


@pytest.mark.parametrize(
    ("pattern", "glob"),
    [
        ("abc", "abc"),
        ("a%b_c", "a*b?c"),
        ("50\\%\\_", "50%_"),
        ("a*b?c[d]", "a[*]b[?]c[[]d]"),
        ("\\\\x", "\\x"),
        ("\\a", "a"),
    ],
)
def test_like_patterns_translate_to_glob(pattern: str, glob: str) -> None:
    assert sql.like_to_glob(pattern) == glob


def test_compilers_raise_search_errors() -> None:
    compilers = (
        run_search.compile_run_filter,
        model_search.compile_experiment_filter,
        model_search.compile_registered_model_filter,
        version_search.compile_model_version_filter,
    )
    for compile_filter in compilers:
        with pytest.raises(SearchError):
            compile_filter("nonsense")
    order_compilers = (
        run_search.compile_run_order_by,
        model_search.compile_experiment_order_by,
        model_search.compile_registered_model_order_by,
        version_search.compile_model_version_order_by,
    )
    for compile_order in order_compilers:
        with pytest.raises(SearchError):
            compile_order(["nonsense DESC"])


def test_dataset_filters_compile_to_one_condition_each() -> None:
    assert len(run_search.compile_run_filter("params.p = 'a' AND datasets.name = 'x'")) == 2
    with pytest.raises(SearchError, match="invalid dataset key 'source'"):
        run_search.compile_run_filter("dataset.source = 'x'")


def test_page_tokens_round_trip_and_bad_ones_are_refused() -> None:
    for offset in (0, 1, 1000, 10**12):
        token = paging.encode_page_token(offset)
        assert paging.decode_page_token(token) == offset
    assert paging.decode_page_token(None) == 0
    assert paging.decode_page_token("") == 0
    # MLflow's own tokens (standard base64 of the same JSON) are understood.
    assert paging.decode_page_token(base64.b64encode(b'{"offset": 7}').decode()) == 7
    bad = [
        "not a token",
        "%%%",
        "ünicode",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b"[1]").decode(),
        base64.b64encode(json.dumps({"offset": -1}).encode()).decode(),
        base64.b64encode(json.dumps({"offset": "5"}).encode()).decode(),
        base64.b64encode(json.dumps({"offset": True}).encode()).decode(),
        base64.b64encode(json.dumps({"start": 5}).encode()).decode(),
    ]
    for token in bad:
        with pytest.raises(SearchError, match="Invalid page token") as raised:
            paging.decode_page_token(token)
        assert raised.value.field == "page_token"
    with pytest.raises(ValueError):
        paging.encode_page_token(-1)
    assert paging.next_page_token(10, 5, 6) == paging.encode_page_token(15)
    assert paging.next_page_token(10, 5, 5) is None


def test_max_results_follow_mlflows_limits() -> None:
    resolve = paging.resolve_max_results
    runs = {
        "default": paging.SEARCH_MAX_RESULTS_DEFAULT,
        "threshold": paging.SEARCH_MAX_RESULTS_THRESHOLD,
    }
    assert (runs["default"], runs["threshold"]) == (1000, 50_000)
    assert resolve(None, **runs) == 1000
    assert resolve(50_000, **runs) == 50_000
    with pytest.raises(SearchError, match="It must be at most 50000, but got value 50001"):
        resolve(50_001, **runs)
    with pytest.raises(SearchError, match="must be a positive integer"):
        resolve(0, **runs)
    assert (
        paging.SEARCH_REGISTERED_MODEL_MAX_RESULTS_DEFAULT,
        paging.SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD,
        paging.SEARCH_MODEL_VERSION_MAX_RESULTS_DEFAULT,
        paging.SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD,
    ) == (100, 1000, 10_000, 200_000)


def test_milliseconds_convert_exactly() -> None:
    moment = dt.datetime(2023, 11, 14, 22, 13, 20, 123_999, tzinfo=dt.UTC)
    assert sql.datetime_to_ms(moment) == 1_700_000_000_123
    assert sql.ms_to_datetime(1_700_000_000_123) == moment.replace(microsecond=123_000)
    before_epoch = dt.datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=dt.UTC)
    assert sql.datetime_to_ms(before_epoch) == -1


# --- Runs against the database -----------------------------------------------------------


@dataclass
class Runs:
    """Candidates of the model `Churn` (and one of `Fraud`), by label."""

    by_label: dict[str, Candidate]
    model: Model
    other_model: Model

    def labels(self, eids: Sequence[str]) -> list[str]:
        names = {c.eid: label for label, c in self.by_label.items()}
        return [names[eid] for eid in eids]

    def newest_first(self, *labels: str) -> list[str]:
        """MLflow's default order among `labels`: start time descending, then run id."""
        chosen = [self.by_label[label] for label in labels]
        chosen.sort(key=lambda c: (-(c.start_time or 0), c.eid))
        return self.labels([c.eid for c in chosen])


async def build_runs(session: AsyncSession, project: Project) -> Runs:
    model = await models.create_model(
        session, project=project, display_name="Churn", actor=OPERATOR
    )
    other_model = await models.create_model(
        session, project=project, display_name="Fraud", actor=OPERATOR
    )
    alice = User(username="alice")
    session.add(alice)
    await session.flush()
    # Her runs are her own: she logs them as a developer of the project.
    session.add(Membership(project_id=project.id, user_id=alice.id, role=Role.DEVELOPER))

    async def run(
        name: str | None,
        start: int,
        status: CandidateStatus,
        *,
        metrics: dict[str, float] | None = None,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        end: int | None = None,
        user: User | None = None,
        of: Model = model,
    ) -> Candidate:
        candidate = await candidates.create_candidate(
            session,
            model=of,
            name=name,
            start_time=start,
            actor=Actor(user.id, user.username, is_admin=False) if user else OPERATOR,
        )
        points = [MetricPoint(k, v, timestamp=start) for k, v in (metrics or {}).items()]
        await candidates.log_batch(
            session,
            candidate=candidate,
            metrics=points,
            params=params or {},
            tags=tags or {},
            actor=OPERATOR,
        )
        await candidates.update_candidate(
            session, candidate=candidate, status=status, end_time=end, actor=OPERATOR
        )
        return candidate

    by_label = {
        "a": await run(
            "alpha",
            1000,
            CandidateStatus.FINISHED,
            metrics={"acc": 0.9, "loss": 0.25},
            params={"lr": "0.1", "opt": "Adam"},
            tags={"team": "Vision"},
            end=1500,
            user=alice,
        ),
        "b": await run(
            "Beta",
            2000,
            CandidateStatus.FAILED,
            metrics={"acc": math.nan, "loss": 0.5},
            params={"lr": "0.01", "opt": "adam"},
            tags={"team": "vision"},
        ),
        "c": await run(
            "gamma",
            3000,
            CandidateStatus.RUNNING,
            metrics={"acc": math.inf},
            params={"lr": "0.1"},
            tags={"note": "x"},
        ),
        "d": await run(None, 3000, CandidateStatus.KILLED, metrics={"acc": -math.inf}),
        "e": await run("epsilon", 500, CandidateStatus.FINISHED, params={"opt": "SGD"}, end=900),
    }
    # Candidates get a default name now, but the column allows none (older rows).
    await session.execute(
        sa.update(Candidate).where(Candidate.id == by_label["d"].id).values(name=None)
    )
    await session.refresh(by_label["d"])
    # Another model's candidate matches most filters; the scope keeps it out.
    await run(
        "alpha",
        4000,
        CandidateStatus.FINISHED,
        metrics={"acc": 0.99},
        params={"lr": "0.1", "opt": "Adam"},
        of=other_model,
    )
    return Runs(by_label, model, other_model)


async def search_runs(
    session: AsyncSession,
    runs: Runs,
    filter_string: str | None = None,
    order_by: list[str] | None = None,
    *,
    limit: int | None = None,
    offset: int = 0,
) -> list[str]:
    """The labels of the runs MLflow's search_runs finds, through the query it runs."""
    size = len(runs.by_label) if limit is None else limit
    found = await run_search.fetch_runs(
        session,
        model_ids=[runs.model.id],
        states=list(LifecycleState),
        conditions=run_search.compile_run_filter(filter_string),
        order_by=order_by,
        page=paging.Page(offset, size),
    )
    return runs.labels([candidate.eid for candidate in found[:size]])


async def test_run_filters_select_exactly_the_matching_candidates(
    session: AsyncSession, project: Project
) -> None:
    runs = await build_runs(session, project)
    a, c = runs.by_label["a"].eid, runs.by_label["c"].eid
    cases = {
        None: "abcde",
        "": "abcde",
        # Metrics: NaN (b) matches only !=; the infinities compare as numbers.
        "metrics.acc > 0.5": "ac",
        "metrics.acc >= 0.9": "ac",
        "metrics.acc = 0.9": "a",
        "metrics.acc != 0.9": "bcd",
        "metrics.acc < 0": "d",
        "metrics.acc > -1e999": "ac",
        "metrics.acc >= -1e999": "acd",
        "metrics.acc <= 1e999": "acd",
        "metrics.acc = 1e999": "c",
        "metrics.missing > 0": "",
        "metrics.missing != 0": "",
        "metrics.loss < 1 AND metrics.acc > 0": "a",
        # Params and tags: `!=` needs the key; IS NULL finds runs without it.
        "params.lr = '0.1'": "ac",
        'params.lr = "0.1"': "ac",
        "params.opt != 'Adam'": "be",
        "params.opt LIKE 'A%'": "a",
        "params.opt LIKE 'a%'": "b",
        "params.opt LIKE 'ADAM'": "",
        "params.opt ILIKE 'a%'": "ab",
        "params.opt ILIKE 'ADAM'": "ab",
        "params.opt ILIKE '%D%'": "abe",
        "params.opt LIKE '_dam'": "ab",
        "params.opt IS NULL": "cd",
        "parameter.opt IS NOT NULL": "abe",
        "tags.team = 'Vision'": "a",
        "tags.team != 'Vision'": "b",
        "tags.team ILIKE 'VISION'": "ab",
        "tags.team IS NULL": "cde",
        # The run name lives in the candidate's name column.
        "tags.mlflow.runName = 'Beta'": "b",
        "tags.`mlflow.runName` LIKE '%a'": "abc",
        "tags.mlflow.runName IS NULL": "d",
        "tags.mlflow.runName IS NOT NULL": "abce",
        "run_name = 'alpha'": "a",
        "attributes.`Run Name` LIKE 'b%'": "",
        "run.run_name ILIKE 'b%'": "b",
        "run_name != 'alpha'": "bce",
        "run_name IN ('alpha', 'gamma')": "ac",
        "run_name NOT IN ('alpha', 'gamma')": "be",
        # Attributes.
        "attributes.status IN ('FINISHED', 'FAILED')": "abe",
        "status NOT IN ('FINISHED', 'FAILED')": "cd",
        "attribute.status = 'finished'": "",
        "attr.status LIKE 'F%'": "abe",
        "status ILIKE 'running'": "c",
        f"run_id = '{a}'": "a",
        f"attributes.run_id IN ('{a}', '{c}', 'ffff')": "ac",
        f"run_id NOT IN ('{a}')": "bcde",
        f"run_id != '{a}'": "bcde",
        "start_time >= 2000": "bcd",
        "created < 1000": "e",
        "start_time != 3000": "abe",
        "end_time > 0": "ae",
        "end_time < 1000": "e",
        "end_time != 900": "a",
        "start_time < 99999999999999999999": "abcde",
        "start_time > 99999999999999999999": "",
        "start_time > -99999999999999999999": "abcde",
        "end_time != 99999999999999999999": "ae",
        "user_id = 'alice'": "a",
        "user_id != 'alice'": "",
        "user_id LIKE 'ali%'": "a",
        # Combined.
        "metrics.acc > 0 AND params.lr = '0.1' AND attributes.status != 'RUNNING'": "a",
        "params.opt ILIKE 'adam' AND tags.team LIKE 'v%' AND start_time > 1000": "b",
    }
    for filter_string, expected in cases.items():
        found = await search_runs(session, runs, filter_string)
        assert sorted(found) == list(expected), filter_string


async def test_like_wildcards_escapes_and_glob_characters(
    session: AsyncSession, project: Project
) -> None:
    model = await models.create_model(
        session, project=project, display_name="Patterns", actor=OPERATOR
    )
    values = ["50%_off", "50%Xoff", "a*b", "axb", "a?b", "[x]", "x", "C:\\dir", "Ab"]
    by_eid: dict[str, str] = {}
    for value in values:
        candidate = await candidates.create_candidate(session, model=model, actor=OPERATOR)
        await candidates.log_batch(
            session, candidate=candidate, params={"v": value}, actor=OPERATOR
        )
        by_eid[candidate.eid] = value

    async def matching(pattern: str, op: str = "LIKE") -> set[str]:
        conditions = run_search.compile_run_filter(f"params.v {op} '{pattern}'")
        rows = await session.scalars(
            sa.select(Candidate.eid).where(Candidate.model_id == model.id, *conditions)
        )
        return {by_eid[eid] for eid in rows}

    assert await matching("50\\%\\_off") == {"50%_off"}
    assert await matching("50\\%%") == {"50%_off", "50%Xoff"}
    assert await matching("50%off") == {"50%_off", "50%Xoff"}
    assert await matching("a*b") == {"a*b"}
    assert await matching("a?b") == {"a?b"}
    assert await matching("[x]") == {"[x]"}
    assert await matching("a_b") == {"a*b", "axb", "a?b"}
    assert await matching("C:\\\\dir") == {"C:\\dir"}
    assert await matching("ab") == set()
    assert await matching("ab", "ILIKE") == {"Ab"}
    assert await matching("A*B", "ILIKE") == {"a*b"}
    assert await matching("%", "ILIKE") == set(values)


async def test_run_order_by_sorts_missing_values_last_and_pages(
    session: AsyncSession, project: Project
) -> None:
    runs = await build_runs(session, project)
    newest_first = runs.newest_first
    cases: list[tuple[list[str] | None, list[str]]] = [
        (None, newest_first("a", "b", "c", "d", "e")),
        ([], newest_first("a", "b", "c", "d", "e")),
        # Numbers (infinities included), then NaN (b), then no metric (e), both ways.
        (["metrics.acc DESC"], ["c", "a", "d", "b", "e"]),
        (["metrics.acc"], ["d", "a", "c", "b", "e"]),
        (["metrics.acc ASC"], ["d", "a", "c", "b", "e"]),
        (["metrics.missing DESC"], newest_first("a", "b", "c", "d", "e")),
        # Ties on the value fall back to start time, then run id.
        (["params.lr"], ["b", *newest_first("a", "c"), *newest_first("d", "e")]),
        (["params.lr DESC"], [*newest_first("a", "c"), "b", *newest_first("d", "e")]),
        # Code point order: upper case first, on both backends.
        (["tags.team"], ["a", "b", *newest_first("c", "d", "e")]),
        (["tags.team DESC"], ["b", "a", *newest_first("c", "d", "e")]),
        (["attributes.run_name"], ["b", "a", "e", "c", "d"]),
        (["run_name DESC"], ["c", "e", "a", "b", "d"]),
        (["tags.`mlflow.runName` DESC"], ["c", "e", "a", "b", "d"]),
        (["attributes.start_time ASC"], ["e", "a", "b", *sorted_by_eid(runs, "c", "d")]),
        (["created DESC", "run_id DESC"], [*sorted_by_eid(runs, "c", "d")[::-1], "b", "a", "e"]),
        (["end_time DESC"], ["a", "e", *newest_first("b", "c", "d")]),
        (["end_time"], ["e", "a", *newest_first("b", "c", "d")]),
        (["status", "metrics.loss DESC"], ["b", "a", "e", "d", "c"]),
        (["user_id"], ["a", *newest_first("b", "c", "d", "e")]),
        (["run_id"], sorted_by_eid(runs, "a", "b", "c", "d", "e")),
    ]
    for order_by, expected in cases:
        assert await search_runs(session, runs, order_by=order_by) == expected, order_by
    # Filters and orders combine.
    assert await search_runs(session, runs, "params.lr = '0.1'", ["metrics.acc DESC"]) == [
        "c",
        "a",
    ]
    # Paging with tokens walks the same order, page by page.
    order = ["metrics.acc DESC"]
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        offset = paging.decode_page_token(token)
        page = await search_runs(session, runs, order_by=order, limit=3, offset=offset)
        token = paging.next_page_token(offset, 2, len(page))
        pages.append(page[:2])
        if token is None:
            break
    assert pages == [["c", "a"], ["d", "b"], ["e"]]


async def test_metric_ordered_pages_cross_from_numbers_to_nan_and_missing_runs(
    session: AsyncSession, project: Project
) -> None:
    """A search ordered by a metric reads the runs with a number first and the rest
    only when a page reaches them: every page, at every offset, is a slice of the one
    order, also past the numbers (filtered, too)."""
    runs = await build_runs(session, project)
    for order, whole in (
        (["metrics.acc DESC"], ["c", "a", "d", "b", "e"]),
        (["metrics.acc ASC", "run_name"], ["d", "a", "c", "b", "e"]),
    ):
        for size in range(1, 6):
            for offset in range(0, 7):
                page = await search_runs(session, runs, order_by=order, limit=size, offset=offset)
                assert page == whole[offset : offset + size], (order, size, offset)
    filtered = "params.opt != 'x'"  # a, b and e: a number, NaN and no metric
    for offset in range(0, 4):
        page = await search_runs(session, runs, filtered, ["metrics.acc"], limit=1, offset=offset)
        assert page == ["a", "b", "e"][offset : offset + 1], offset


def sorted_by_eid(runs: Runs, *labels: str) -> list[str]:
    return sorted(labels, key=lambda label: runs.by_label[label].eid)


# --- Experiments, registered models, versions --------------------------------------------


def at_ms(ms: int, micros: int = 0) -> dt.datetime:
    return sql.ms_to_datetime(ms) + dt.timedelta(microseconds=micros)


async def set_times(
    session: AsyncSession,
    table: type[Model] | type[ModelVersion],
    row_id: int,
    **times: dt.datetime,
) -> None:
    await session.execute(sa.update(table).where(table.id == row_id).values(**times))


async def test_experiment_search(session: AsyncSession, project: Project) -> None:
    churn = await models.create_model(
        session,
        project=project,
        display_name="Churn",
        metadata={"team": "vision", "stage": "p"},
        actor=OPERATOR,
    )
    fraud = await models.create_model(
        session,
        project=project,
        display_name="fraud detection",
        metadata={"team": "risk"},
        actor=OPERATOR,
    )
    alpha = await models.create_model(
        session, project=project, display_name="Alpha", actor=OPERATOR
    )
    labels = {churn.id: "churn", fraud.id: "fraud", alpha.id: "alpha"}
    await set_times(
        session, Model, churn.id, created_at=at_ms(1_700_000_000_123, 456), updated_at=at_ms(9)
    )
    await set_times(
        session, Model, fraud.id, created_at=at_ms(1_700_000_001_000), updated_at=at_ms(8)
    )
    await set_times(
        session, Model, alpha.id, created_at=at_ms(1_700_000_002_000, 999), updated_at=at_ms(7)
    )

    async def found(filter_string: str | None, order_by: list[str] | None = None) -> list[str]:
        rows = await session.scalars(
            sa.select(Model.id)
            .where(Model.id.in_(labels), *model_search.compile_experiment_filter(filter_string))
            .order_by(*model_search.compile_experiment_order_by(order_by))
        )
        return [labels[row] for row in rows]

    filters = {
        "name = 'Churn'": {"churn"},
        "attributes.name LIKE '%a%'": {"fraud", "alpha"},
        "name LIKE 'c%'": set(),
        "name ILIKE 'c%'": {"churn"},
        "name != 'Churn'": {"fraud", "alpha"},
        "tags.team = 'vision'": {"churn"},
        "tags.team != 'vision'": {"fraud"},
        "tags.team IS NULL": {"alpha"},
        "tag.stage IS NOT NULL": {"churn"},
        # Rendered milliseconds match whatever the microseconds behind them.
        "creation_time = 1700000000123": {"churn"},
        "creation_time != 1700000000123": {"fraud", "alpha"},
        "creation_time > 1700000000123": {"fraud", "alpha"},
        "creation_time >= 1700000000123": {"churn", "fraud", "alpha"},
        "creation_time < 1700000000124": {"churn"},
        "creation_time <= 1700000000122": set(),
        "creation_time <= 1700000002000": {"churn", "fraud", "alpha"},
        "creation_time < 1700000002000": {"churn", "fraud"},
        "last_update_time > 7": {"churn", "fraud"},
        "creation_time < 1e30": {"churn", "fraud", "alpha"},
        "creation_time = -1e30": set(),
        "name != 'Alpha' AND tags.team ILIKE '%I%'": {"churn", "fraud"},
    }
    for filter_string, expected in filters.items():
        assert set(await found(filter_string)) == expected, filter_string
    iid_order = sorted(
        labels, key=lambda i: {churn.id: churn.iid, fraud.id: fraud.iid, alpha.id: alpha.iid}[i]
    )
    orders: list[tuple[list[str] | None, list[str]]] = [
        (None, ["alpha", "fraud", "churn"]),
        (["name"], ["alpha", "churn", "fraud"]),
        (["attributes.name DESC"], ["fraud", "churn", "alpha"]),
        (["experiment_id DESC"], [labels[i] for i in reversed(iid_order)]),
        (["last_update_time"], ["alpha", "fraud", "churn"]),
        (["creation_time ASC"], ["churn", "fraud", "alpha"]),
    ]
    for order_by, expected_order in orders:
        assert await found(None, order_by) == expected_order, order_by


async def test_registered_model_search_hides_prompts_like_mlflow(
    session: AsyncSession, project: Project
) -> None:
    prompt_tag = model_search.IS_PROMPT_TAG
    churn = await models.create_model(
        session, project=project, display_name="Churn", registered=True, actor=OPERATOR
    )
    prompt = await models.create_model(
        session,
        project=project,
        display_name="greeting",
        registered=True,
        metadata={prompt_tag: "true"},
        actor=OPERATOR,
    )
    flagged = await models.create_model(
        session,
        project=project,
        display_name="flagged",
        registered=True,
        metadata={prompt_tag: "false", "team": "x"},
        actor=OPERATOR,
    )
    await models.create_model(session, project=project, display_name="Scratch", actor=OPERATOR)
    labels = {churn.id: "churn", prompt.id: "prompt", flagged.id: "flagged"}
    await set_times(session, Model, churn.id, updated_at=at_ms(3), created_at=at_ms(1))
    await set_times(session, Model, flagged.id, updated_at=at_ms(2), created_at=at_ms(2))

    async def found(filter_string: str | None, order_by: list[str] | None = None) -> list[str]:
        rows = await session.scalars(
            sa.select(Model.id)
            .where(
                Model.project_id == project.id,
                Model.registered.is_(True),
                *model_search.compile_registered_model_filter(filter_string),
            )
            .order_by(*model_search.compile_registered_model_order_by(order_by))
        )
        return [labels[row] for row in rows]

    # What the 3.x client sends: models without the tag match, prompts do not.
    client_filter = f"tag.`{prompt_tag}` != 'true'"
    filters: dict[str | None, list[str]] = {
        None: ["churn", "flagged"],
        client_filter: ["churn", "flagged"],
        f"name LIKE '%' AND {client_filter}": ["churn", "flagged"],
        f"tags.`{prompt_tag}` = 'false'": ["churn", "flagged"],
        f"tags.`{prompt_tag}` = 'true'": ["prompt"],
        f"tags.`{prompt_tag}` != 'false'": ["prompt"],
        "tags.team != 'y'": ["flagged"],
        "tags.team = 'x'": ["flagged"],
        "name = 'Churn'": ["churn"],
        "name ILIKE 'CH%'": ["churn"],
        "name LIKE 'CH%'": [],
        "name != 'Churn'": ["flagged"],
    }
    for filter_string, expected in filters.items():
        assert await found(filter_string) == expected, filter_string
    assert await found(None, ["name DESC"]) == ["flagged", "churn"]
    assert await found(None, ["timestamp DESC"]) == ["churn", "flagged"]
    assert await found(None, ["last_updated_timestamp"]) == ["flagged", "churn"]
    assert await found(None, ["creation_timestamp DESC"]) == ["flagged", "churn"]


async def test_model_version_search(session: AsyncSession, project: Project) -> None:
    churn = await models.create_model(
        session, project=project, display_name="Churn", actor=OPERATOR
    )
    fraud = await models.create_model(
        session, project=project, display_name="Fraud", actor=OPERATOR
    )
    prompt = await models.create_model(
        session,
        project=project,
        display_name="greeting",
        metadata={model_search.IS_PROMPT_TAG: "true"},
        actor=OPERATOR,
    )
    run_1 = await candidates.create_candidate(session, model=churn, name="r1", actor=OPERATOR)
    run_3 = await candidates.create_candidate(session, model=churn, name="r3", actor=OPERATOR)
    created = {
        "c1": await versions.create_version(
            session,
            model=churn,
            candidate=run_1,
            source="s3://bucket/churn/1",
            metadata={"stage": "prod"},
            actor=OPERATOR,
        ),
        "c2": await versions.create_version(
            session, model=churn, source="/local/churn", actor=OPERATOR
        ),
        "c3": await versions.create_version(session, model=churn, candidate=run_3, actor=OPERATOR),
        "f1": await versions.create_version(
            session, model=fraud, source="s3://bucket/fraud", actor=OPERATOR
        ),
        "p1": await versions.create_version(
            session, model=prompt, metadata={model_search.IS_PROMPT_TAG: "true"}, actor=OPERATOR
        ),
    }
    labels = {v.id: label for label, v in created.items()}
    for minute, label in enumerate(["c1", "f1", "c2", "c3", "p1"]):
        await set_times(session, ModelVersion, created[label].id, updated_at=at_ms(60_000 * minute))

    async def found(filter_string: str | None, order_by: list[str] | None = None) -> list[str]:
        rows = await session.scalars(
            sa.select(ModelVersion.id)
            .where(
                ModelVersion.project_id == project.id,
                *version_search.compile_model_version_filter(filter_string),
            )
            .order_by(*version_search.compile_model_version_order_by(order_by))
        )
        return [labels[row] for row in rows]

    filters: dict[str | None, set[str]] = {
        None: {"c1", "c2", "c3", "f1"},
        "name = 'Churn'": {"c1", "c2", "c3"},
        "name = 'churn'": set(),
        "name ILIKE 'churn'": {"c1", "c2", "c3"},
        "name != 'Churn'": {"f1"},
        "name = 'Churn' AND version_number > 1": {"c2", "c3"},
        "version_number = 1": {"c1", "f1"},
        "version_number < 99999999999": {"c1", "c2", "c3", "f1"},
        f"run_id = '{run_1.eid}'": {"c1"},
        f"run_id IN ('{run_1.eid}', '{run_3.eid}')": {"c1", "c3"},
        f"run_id != '{run_1.eid}'": {"c2", "c3", "f1"},
        "source_path LIKE 's3://%'": {"c1", "f1"},
        "source_path = '/local/churn'": {"c2"},
        "tags.stage = 'prod'": {"c1"},
        "tags.stage != 'dev'": {"c1"},
        f"tag.`{model_search.IS_PROMPT_TAG}` != 'true'": {"c1", "c2", "c3", "f1"},
        f"tags.`{model_search.IS_PROMPT_TAG}` = 'true'": {"p1"},
    }
    for filter_string, expected in filters.items():
        assert set(await found(filter_string)) == expected, filter_string
    assert await found(None) == ["c3", "c2", "f1", "c1"]
    assert await found(None, ["version_number DESC"]) == ["c3", "c2", "c1", "f1"]
    assert await found(None, ["name DESC"]) == ["f1", "c3", "c2", "c1"]
    assert await found(None, ["name", "version_number ASC"]) == ["c1", "c2", "c3", "f1"]
    assert await found(None, ["last_updated_timestamp"]) == ["c1", "f1", "c2", "c3"]
