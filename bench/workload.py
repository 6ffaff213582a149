"""The timed operations: one MLflow client workload, the same against every server.

Every timed call is one sample; a row's figure is the median of its samples (or a
rate over the whole seeding, or the largest memory growth). A call that raises ends its
row with that error and the workload goes on with the next stage.
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import requests
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from bench.seed import seed_candidates
from bench.servers import Server, tree_rss_bytes
from bench.shapes import (
    INGEST_METRICS,
    INGEST_PARAMS,
    INGEST_STEPS,
    SEARCH_FILTER,
    SEARCH_ORDER,
    SEARCH_TOP,
    SEARCH_WIDE,
    expected_matches,
    search_run_values,
)

T = TypeVar("T")
MIB = 1024 * 1024
MIN_SAMPLES = 3

INGEST_EXPERIMENT = "bench_ingest"
SEARCH_EXPERIMENT = "bench_search"
ARTIFACTS_EXPERIMENT = "bench_artifacts"
ALIAS = "champion"


def _candidates_query(name: str, variables: str, params: str, metrics: str) -> str:
    """The first 50 candidates of a model by a metric, with `params` and `metrics` as
    the fields that select them."""
    return f"""
query {name}($project: String!, $model: String!, $metric: String!{variables}) {{
  project(path: $project) {{
    model(name: $model) {{
      candidates(first: 50, orderBy: {{field: METRIC, key: $metric, direction: DESC}}) {{
        totalCount
        pageInfo {{ hasNextPage endCursor }}
        edges {{
          cursor
          node {{
            id iid name status
            {params} {{ name value }}
            {metrics} {{ name value step }}
            version {{ version }}
            author {{ username }}
          }}
        }}
      }}
    }}
  }}
}}
"""


# The whole page: every param and metric of 50 candidates.
GRAPHQL_QUERY = _candidates_query("Page", "", "params", "metrics")
# What the web UI's candidates table asks for: the columns chosen (10 metrics, 5 params).
GRAPHQL_TABLE_QUERY = _candidates_query(
    "Table",
    ", $params: [String!], $metrics: [String!]",
    "params(names: $params)",
    "metrics(names: $metrics)",
)
TABLE_PARAMS = list(INGEST_PARAMS[:5])
TABLE_METRICS = list(INGEST_METRICS[:10])

Kind = Literal["latency", "throughput", "rate", "peak"]


@dataclass(frozen=True)
class Config:
    runs: int = 50
    repeat: int = 20
    big_repeat: int = 3
    small_search_runs: int = 200
    search_runs: int = 10_000
    threads: int = 8
    small_mib: int = 1
    big_mib: int = 200
    scale: tuple[int, ...] = (1_000, 10_000, 100_000)
    # Repetitions of one row stop once they took this long (after MIN_SAMPLES).
    budget_seconds: float = 60.0


@dataclass(frozen=True)
class Operation:
    """One row of the report.

    `kind` says how samples become the figure: latency is the median in ms; throughput is
    `amount` per median second; rate is `amount` over the sum of the samples; peak is
    the largest sample.
    """

    key: str
    label: str
    unit: str
    kind: Kind = "latency"
    amount: float = 1.0
    needs: str | None = None
    only: str | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.kind in ("throughput", "rate")


def operations(config: Config) -> list[Operation]:
    small, big = config.small_mib, config.big_mib
    rows = [
        Operation("create_run", "create run", "ms"),
        Operation(
            "log_batch",
            f"log_batch {len(INGEST_PARAMS)} params + {len(INGEST_METRICS) * INGEST_STEPS} metrics",
            "metrics/s",
            "throughput",
            len(INGEST_METRICS) * INGEST_STEPS,
        ),
        Operation("set_tag", "set tag", "ms"),
        Operation("get_run", "get run", "ms"),
        Operation("end_run", "end run (update)", "ms"),
        Operation("metric_history", f"metric history ({INGEST_STEPS} steps)", "ms"),
        Operation(
            "seed",
            f"seed {config.search_runs:,} runs ({config.threads} threads)",
            "runs/s",
            "rate",
            config.search_runs,
        ),
        Operation("search_small", f"search top-{SEARCH_TOP} @ {config.small_search_runs:,}", "ms"),
        Operation("search_large", f"search top-{SEARCH_TOP} @ {config.search_runs:,}", "ms"),
        Operation("search_wide", f"search {SEARCH_WIDE:,} runs @ {config.search_runs:,}", "ms"),
        Operation("model_version", "create model version", "ms", needs="registry"),
        Operation("alias", "resolve alias", "ms", needs="registry"),
    ]
    for mib in (small, big):
        for direction in ("upload", "download"):
            key = f"{direction}_{mib}"
            rows += [
                Operation(
                    key, f"{direction} {mib} MiB", "MiB/s", "throughput", mib, needs="artifacts"
                ),
                Operation(
                    f"{key}_rss",
                    f"{direction} {mib} MiB: server RSS growth",
                    "MiB",
                    "peak",
                    needs="artifacts",
                ),
            ]
    rows.append(Operation("graphql", "GraphQL candidates page (50)", "ms", needs="graphql"))
    rows.append(
        Operation(
            "graphql_table",
            "GraphQL candidates table (50 x 10 metrics, 5 params)",
            "ms",
            needs="graphql",
        )
    )
    rows += [
        Operation(
            f"scale_{size}",
            f"scale: search top-{SEARCH_TOP} @ {size:,}",
            "ms",
            only="modelreg-pg",
        )
        for size in config.scale
    ]
    return rows


@dataclass
class Result:
    """The samples of one operation on one server, in seconds (MiB for peaks)."""

    samples: list[float] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None

    def figure(self, operation: Operation) -> float | None:
        if self.error or self.skipped or not self.samples:
            return None
        if operation.kind == "latency":
            return statistics.median(self.samples) * 1000
        if operation.kind == "throughput":
            median = statistics.median(self.samples)
            return operation.amount / median if median > 0 else None
        if operation.kind == "rate":
            total = sum(self.samples)
            return operation.amount / total if total > 0 else None
        return max(self.samples)


class OperationFailed(Exception):
    """A timed call raised; its row already holds the error."""


def describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:400]}"


class RssSampler:
    """Samples the resident memory of a server's process tree in a background thread."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        self.pid = pid
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.baseline = self.peak = tree_rss_bytes(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss_bytes(self.pid))

    @property
    def growth_mib(self) -> float:
        return max(0, self.peak - self.baseline) / MIB


def make_blob(directory: Path, mib: int) -> Path:
    """A file of `mib` MiB of random bytes, made once and reused."""
    path = directory / f"blob_{mib}mib.bin"
    if not path.is_file() or path.stat().st_size != mib * MIB:
        directory.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as file:
            for _ in range(mib):
                file.write(os.urandom(MIB))
    return path


class Workload:
    """Runs every stage against one server and collects a Result per operation."""

    def __init__(
        self,
        server: Server,
        config: Config,
        workdir: Path,
        log: Callable[[str], None],
        database_url: str | None = None,
    ) -> None:
        self.server = server
        self.config = config
        self.workdir = workdir
        self.log = log
        self.database_url = database_url
        self.results: dict[str, Result] = {}
        self.client = MlflowClient(tracking_uri=server.url)
        self.ingest_experiment = ""
        self.ingest_runs: list[str] = []

    # --- bookkeeping ----------------------------------------------------------------------

    def result(self, key: str) -> Result:
        return self.results.setdefault(key, Result())

    def timed(self, key: str, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            value = call()
        except Exception as error:
            self.result(key).error = describe(error)
            raise OperationFailed(key) from error
        self.result(key).samples.append(time.perf_counter() - started)
        return value

    def stage(self, name: str, keys: list[str], body: Callable[[], None]) -> None:
        """Run a stage; when it stops on an error, its rows without samples say why."""
        self.log(f"  {self.server.key}: {name}")
        try:
            body()
        except OperationFailed as failed:
            reason = f"not run: '{failed}' failed first"
        except Exception as error:
            reason = f"{name} setup failed: {describe(error)}"
        else:
            return
        for key in keys:
            result = self.result(key)
            if not result.samples and result.error is None:
                result.error = reason

    def repetitions(self, key: str, count: int) -> Iterator[int]:
        """0 to count-1, cut short once the row has used its time budget (but never before
        MIN_SAMPLES samples)."""
        started = time.perf_counter()
        for index in range(count):
            spent = time.perf_counter() - started
            if index >= MIN_SAMPLES and spent > self.config.budget_seconds:
                self.result(key).notes.append(
                    f"{index} of {count} repetitions: time budget of "
                    f"{self.config.budget_seconds:g}s spent"
                )
                return
            yield index

    def skip(self, keys: list[str], reason: str) -> None:
        for key in keys:
            self.result(key).skipped = reason

    # --- the stages -----------------------------------------------------------------------

    def run(self) -> dict[str, Result]:
        if self.server.token:
            os.environ["MLFLOW_TRACKING_TOKEN"] = self.server.token
        else:
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        self.warm_up()
        features = self.server.features
        ingest_keys = ["create_run", "log_batch", "set_tag", "get_run", "end_run"]
        self.stage("ingest", ingest_keys, self.ingest)
        self.stage("metric history", ["metric_history"], self.metric_history)
        search_keys = ["seed", "search_small", "search_large", "search_wide"]
        self.stage("search", search_keys, self.search)
        registry_keys = ["model_version", "alias"]
        if "registry" in features:
            self.stage("registry", registry_keys, self.registry)
        else:
            self.skip(registry_keys, "no model registry")
        artifact_keys = [
            f"{direction}_{mib}{suffix}"
            for mib in (self.config.small_mib, self.config.big_mib)
            for direction in ("upload", "download")
            for suffix in ("", "_rss")
        ]
        if "artifacts" in features:
            self.stage("artifacts", artifact_keys, self.artifacts)
        else:
            self.skip(artifact_keys, "no artifact proxy")
        if "graphql" in features:
            self.stage("graphql", ["graphql", "graphql_table"], self.graphql)
        if self.database_url is not None:
            scale_keys = [f"scale_{size}" for size in self.config.scale]
            self.stage("scale", scale_keys, self.scale)
        return self.results

    def warm_up(self) -> None:
        for _ in range(3):
            with contextlib.suppress(Exception):
                self.client.search_experiments(max_results=10)

    def ingest(self) -> None:
        client = self.client
        self.ingest_experiment = client.create_experiment(INGEST_EXPERIMENT)
        for index in range(self.config.runs):
            run = self.timed(
                "create_run",
                partial(client.create_run, self.ingest_experiment, run_name=f"ingest_{index}"),
            )
            run_id = run.info.run_id
            metrics, params = ingest_batch(index)
            self.timed(
                "log_batch", partial(client.log_batch, run_id, metrics=metrics, params=params)
            )
            self.timed("set_tag", partial(client.set_tag, run_id, "stage", "trained"))
            fetched = self.timed("get_run", partial(client.get_run, run_id))
            self.timed("end_run", partial(client.set_terminated, run_id))
            self.ingest_runs.append(run_id)
            logged = (len(fetched.data.params), len(fetched.data.metrics))
            expected = (len(INGEST_PARAMS), len(INGEST_METRICS))
            if index == 0 and logged != expected:
                self.result("get_run").notes.append(
                    f"returned {logged[0]} params and {logged[1]} metrics, "
                    f"expected {expected[0]} and {expected[1]}"
                )

    def metric_history(self) -> None:
        if not self.ingest_runs:
            raise RuntimeError("no ingested runs")
        for index in self.repetitions("metric_history", self.config.repeat):
            run_id = self.ingest_runs[index % len(self.ingest_runs)]
            points = self.timed(
                "metric_history", partial(self.client.get_metric_history, run_id, "m0")
            )
            if index == 0 and len(points) != INGEST_STEPS:
                self.result("metric_history").notes.append(
                    f"returned {len(points)} points, expected {INGEST_STEPS}"
                )

    def search(self) -> None:
        config = self.config
        experiment_id = self.client.create_experiment(SEARCH_EXPERIMENT)
        small = min(config.small_search_runs, config.search_runs)
        self.seed(experiment_id, 0, small)
        top = partial(self.filtered_search, experiment_id)
        self.repeat_search("search_small", top, expected=expected_matches(small, SEARCH_TOP))
        self.seed(experiment_id, small, config.search_runs)
        self.repeat_search(
            "search_large", top, expected=expected_matches(config.search_runs, SEARCH_TOP)
        )
        wide = partial(
            self.client.search_runs,
            [experiment_id],
            order_by=SEARCH_ORDER,
            max_results=SEARCH_WIDE,
        )
        self.repeat_search("search_wide", wide, expected=min(SEARCH_WIDE, config.search_runs))

    def filtered_search(self, experiment_id: str) -> list[Any]:
        runs: list[Any] = self.client.search_runs(
            [experiment_id],
            filter_string=SEARCH_FILTER,
            order_by=SEARCH_ORDER,
            max_results=SEARCH_TOP,
        )
        return runs

    def repeat_search(self, key: str, search: Callable[[], list[Any]], *, expected: int) -> None:
        for index in self.repetitions(key, self.config.repeat):
            runs = self.timed(key, search)
            if index == 0:
                self.check_search(key, runs, expected)

    def check_search(self, key: str, runs: list[Any], expected: int) -> None:
        if self.server.key == "floor":
            return
        notes = self.result(key).notes
        if len(runs) != expected:
            notes.append(f"returned {len(runs)} runs, expected {expected}")
        accuracy = [run.data.metrics.get("accuracy", float("nan")) for run in runs]
        if accuracy != sorted(accuracy, reverse=True):
            notes.append("not ordered by metrics.accuracy DESC")

    def seed(self, experiment_id: str, first: int, last: int) -> None:
        """Create runs first..last-1 (create_run + log_batch each) from a thread pool; the
        wall time is one sample of the seed row."""
        if last <= first:
            return
        client = self.client

        def create(index: int) -> None:
            params, metrics = search_run_values(index)
            now = int(time.time() * 1000)
            run = client.create_run(experiment_id, run_name=f"search_{index}")
            client.log_batch(
                run.info.run_id,
                metrics=[Metric(name, value, now, 0) for name, value in metrics.items()],
                params=[Param(name, value) for name, value in params.items()],
            )

        started = time.perf_counter()
        with ThreadPoolExecutor(self.config.threads) as pool:
            failures = [
                error
                for error in pool.map(_error_of, [partial(create, i) for i in range(first, last)])
                if error is not None
            ]
        seconds = time.perf_counter() - started
        result = self.result("seed")
        if failures:
            result.error = (
                f"{len(failures)} of {last - first} runs failed; first: {describe(failures[0])}"
            )
            raise OperationFailed("seed")
        result.samples.append(seconds)

    def registry(self) -> None:
        if not self.ingest_runs:
            raise RuntimeError("no ingested runs to register")
        client = self.client
        client.create_registered_model(INGEST_EXPERIMENT)
        versions = []
        for run_id in self.ingest_runs[: self.config.repeat]:
            version = self.timed(
                "model_version",
                partial(
                    client.create_model_version,
                    INGEST_EXPERIMENT,
                    f"runs:/{run_id}/model",
                    run_id=run_id,
                ),
            )
            versions.append(version.version)
        client.set_registered_model_alias(INGEST_EXPERIMENT, ALIAS, versions[0])
        for index in self.repetitions("alias", self.config.repeat):
            found = self.timed(
                "alias", partial(client.get_model_version_by_alias, INGEST_EXPERIMENT, ALIAS)
            )
            if index == 0 and str(found.version) != str(versions[0]):
                self.result("alias").notes.append(
                    f"resolved to version {found.version}, expected {versions[0]}"
                )

    def artifacts(self) -> None:
        client = self.client
        experiment = client.create_experiment(ARTIFACTS_EXPERIMENT)
        run_id = client.create_run(experiment, run_name="artifacts").info.run_id
        plan = (
            (self.config.small_mib, self.config.repeat),
            (self.config.big_mib, self.config.big_repeat),
        )
        for mib, repeat in plan:
            blob = make_blob(self.workdir / "blobs", mib)
            for index in self.repetitions(f"upload_{mib}", repeat):
                artifact_path = f"blob{mib}/{index}"
                with RssSampler(self.server.pid) as memory:
                    self.timed(
                        f"upload_{mib}",
                        partial(client.log_artifact, run_id, str(blob), artifact_path),
                    )
                self.result(f"upload_{mib}_rss").samples.append(memory.growth_mib)
                with tempfile.TemporaryDirectory(dir=self.workdir) as destination:
                    with RssSampler(self.server.pid) as memory:
                        local = self.timed(
                            f"download_{mib}",
                            partial(
                                client.download_artifacts,
                                run_id,
                                f"{artifact_path}/{blob.name}",
                                destination,
                            ),
                        )
                    self.result(f"download_{mib}_rss").samples.append(memory.growth_mib)
                    size = Path(local).stat().st_size
                    if size != blob.stat().st_size:
                        self.result(
                            f"download_{mib}"
                        ).error = f"downloaded {size} bytes, uploaded {blob.stat().st_size}"
                        raise OperationFailed(f"download_{mib}")

    def graphql(self) -> None:
        variables = {"project": "default", "model": INGEST_EXPERIMENT, "metric": "m0"}
        self.graphql_page("graphql", {"query": GRAPHQL_QUERY, "variables": variables})
        table = variables | {"params": TABLE_PARAMS, "metrics": TABLE_METRICS}
        self.graphql_page("graphql_table", {"query": GRAPHQL_TABLE_QUERY, "variables": table})

    def graphql_page(self, key: str, body: dict[str, Any]) -> None:
        session = requests.Session()
        url = f"{self.server.url}/graphql"
        headers = {"Authorization": f"Bearer {self.server.token}"}
        result = self.result(key)
        for index in self.repetitions(key, self.config.repeat):
            response = self.timed(
                key, partial(session.post, url, json=body, headers=headers, timeout=120)
            )
            problem = graphql_problem(response, expected=len(self.ingest_runs))
            if problem is not None:
                result.samples.clear()
                result.error = problem
                return
            if index == 0:
                result.notes.append(f"{len(response.content):,} bytes per answer")

    def scale(self) -> None:
        assert self.database_url is not None
        for size in self.config.scale:
            name = f"bench_scale_{size}"
            experiment_id = self.client.create_experiment(name)
            self.log(f"  {self.server.key}: seeding {size:,} candidates into {name}")
            seconds = seed_candidates(self.database_url, name, size)
            key = f"scale_{size}"
            self.result(key).notes.append(f"bulk-seeded in {seconds:.1f}s")
            try:
                self.repeat_search(
                    key,
                    partial(self.filtered_search, experiment_id),
                    expected=expected_matches(size, SEARCH_TOP),
                )
            except OperationFailed:
                continue


def ingest_batch(index: int) -> tuple[list[Metric], list[Param]]:
    """The log_batch of the index-th ingest run: every param, every metric at every step."""
    rng = random.Random(index)
    now = int(time.time() * 1000)
    metrics = [
        Metric(name, rng.random(), now + step, step)
        for step in range(INGEST_STEPS)
        for name in INGEST_METRICS
    ]
    params = [Param(name, f"{rng.random():.6f}") for name in INGEST_PARAMS]
    return metrics, params


def _error_of(call: Callable[[], None]) -> BaseException | None:
    try:
        call()
    except Exception as error:
        return error
    return None


def graphql_problem(response: requests.Response, *, expected: int) -> str | None:
    """Why a GraphQL answer is not the page asked for, or None when it is."""
    try:
        payload = response.json()
    except ValueError:
        return f"HTTP {response.status_code}, not JSON: {response.text[:200]!r}"
    errors = payload.get("errors") if isinstance(payload, dict) else None
    if response.status_code != 200 or errors:
        messages = "; ".join(str(error.get("message", error)) for error in errors or [])
        return f"HTTP {response.status_code}: {messages or response.text[:300]}"
    page = _dig(payload, "data", "project", "model", "candidates")
    if not isinstance(page, dict):
        return f"no candidates page in the answer: {response.text[:300]}"
    if page.get("totalCount") != expected or len(page.get("edges", [])) != min(50, expected):
        return (
            f"totalCount {page.get('totalCount')} and {len(page.get('edges', []))} edges, "
            f"expected {expected} and {min(50, expected)}"
        )
    return None


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


@contextlib.contextmanager
def client_environment(variables: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the MLflow client for the length of the block."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
