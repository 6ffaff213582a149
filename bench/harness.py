"""The benchmark run: each server in turn, the workload against it, then the report.

Started by bench/run.py inside the repository's venv.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import report, servers
from bench.servers import REPO, ForeignLoad, Server
from bench.workload import Config, Result, Workload, client_environment, operations
from tests.services import RedisServer

ALL_SERVERS = ["floor", "mlflow", "fasttrackml", "modelreg-sqlite", "modelreg-pg", "modelreg-pg-2"]

# The MLflow client: long transfers, few retries (a failure shows instead of hiding).
CLIENT_ENVIRONMENT = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "600",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_POOL_MAXSIZE": "32",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    **servers.QUIET_ENVIRONMENT,
}


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Benchmark modelreg against MLflow, FastTrackML and a do-nothing floor.",
    )
    parser.add_argument("--runs", type=int, help="runs of the ingest workload (50)")
    parser.add_argument("--repeat", type=int, help="repetitions of each single call (20)")
    parser.add_argument("--big-repeat", type=int, help="repetitions of the big transfer (3)")
    parser.add_argument("--search-runs", type=int, help="runs seeded for search (10000)")
    parser.add_argument(
        "--small-search-runs",
        type=int,
        help="runs seeded before the first search, the rest after it (200)",
    )
    parser.add_argument("--threads", type=int, help="client threads for seeding (8)")
    parser.add_argument("--big-mib", type=int, help="size of the big artifact in MiB (200)")
    parser.add_argument(
        "--budget", type=float, help="seconds after which a row stops repeating (60)"
    )
    parser.add_argument(
        "--scale", help="candidate counts for the modelreg PostgreSQL scaling rows ('' for none)"
    )
    parser.add_argument(
        "--servers",
        default=",".join(ALL_SERVERS),
        help=f"which servers, comma-separated (default: {','.join(ALL_SERVERS)})",
    )
    parser.add_argument(
        "--mlflow-workers", type=int, default=1, help="MLflow server worker processes (1)"
    )
    parser.add_argument(
        "--mlflow-jobs",
        action="store_true",
        help="keep MLflow's background job runner (off by default: it polls all the time)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results.json")
    parser.add_argument("--venvs", type=Path, default=REPO / "bench" / ".venvs")
    parser.add_argument("--workdir", type=Path, default=REPO / "bench" / ".work")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        help="before each server, wait up to this many seconds for other processes to go quiet",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    return parser.parse_args(argv)


def make_config(args: argparse.Namespace) -> Config:
    base = (
        Config(
            runs=3,
            repeat=3,
            big_repeat=1,
            small_search_runs=50,
            search_runs=200,
            threads=4,
            big_mib=20,
            scale=(1_000,),
        )
        if args.quick
        else Config()
    )
    overrides: dict[str, Any] = {
        name: getattr(args, name)
        for name in (
            "runs",
            "repeat",
            "big_repeat",
            "search_runs",
            "small_search_runs",
            "threads",
            "big_mib",
        )
        if getattr(args, name) is not None
    }
    if args.budget is not None:
        overrides["budget_seconds"] = args.budget
    if args.scale is not None:
        overrides["scale"] = tuple(int(size) for size in args.scale.split(",") if size.strip())
    config = dataclasses.replace(base, **overrides)
    if config.small_search_runs > config.search_runs:
        config = dataclasses.replace(config, small_search_runs=config.search_runs)
    return config


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class Started:
    server: Server
    database_url: str | None = None
    # Processes serving it besides the server's own tree (PostgreSQL).
    helper_pids: tuple[int, ...] = ()


@contextlib.contextmanager
def start(key: str, args: argparse.Namespace, workdir: Path) -> Iterator[Started]:
    """The server named `key`, running until the block ends."""
    if key == "floor":
        with servers.floor_server(workdir) as server:
            yield Started(server)
    elif key == "mlflow":
        with servers.mlflow_server(
            workdir, args.venvs, workers=args.mlflow_workers, jobs=args.mlflow_jobs
        ) as server:
            yield Started(server)
    elif key == "fasttrackml":
        with servers.fasttrackml_server(workdir, args.venvs) as server:
            yield Started(server)
    elif key == "modelreg-sqlite":
        with servers.modelreg_server(workdir, key, None) as server:
            yield Started(server)
    elif key == "modelreg-pg":
        with (
            servers.postgres_server(workdir) as postgres,
            servers.modelreg_server(workdir, key, postgres.url) as server,
        ):
            server.details["postgresql"] = postgres.version
            yield Started(server, postgres.url, (postgres.pid,))
    elif key == "modelreg-pg-2":
        # Two API processes, as `modelreg serve --workers 2` runs them; they share jobs and
        # events through Redis. The scale rows stay with modelreg-pg (no database_url).
        with (
            servers.postgres_server(workdir) as postgres,
            RedisServer(workdir) as redis,
            servers.modelreg_server(
                workdir, key, postgres.url, workers=2, redis_url=redis.url
            ) as server,
        ):
            server.details["postgresql"] = postgres.version
            yield Started(server, None, (postgres.pid, *([redis.pid] if redis.pid else [])))
    else:
        raise ValueError(f"unknown server '{key}'")


def wait_for_quiet(limit: float, threshold: float = 0.25) -> float:
    """Wait up to `limit` seconds for other processes to use less than `threshold` cores;
    returns the last reading."""
    deadline = time.monotonic() + limit
    while True:
        watch = ForeignLoad([os.getpid()])
        time.sleep(3)
        cores = watch.cores()
        if cores < threshold or time.monotonic() > deadline:
            return cores
        log(f"waiting for a quiet machine: other processes use {cores:.2f} cores")


def measure(
    key: str,
    args: argparse.Namespace,
    config: Config,
    workdir: Path,
    results: dict[str, dict[str, Result]],
) -> dict[str, Any]:
    """Start one server, run the workload into `results[key]`, stop it; returns what
    there is to know about the server (with "error" if it did not start)."""
    server_dir = workdir / key
    server_dir.mkdir()
    log(f"{key}: starting")
    began = time.perf_counter()
    facts: dict[str, Any] = {}
    try:
        with start(key, args, server_dir) as running:
            server = running.server
            up = time.perf_counter() - began
            log(f"{key}: {server.version} at {server.url} (pid {server.pid}), {up:.1f}s")
            facts |= {
                "version": server.version,
                "url": server.url,
                "pid": server.pid,
                "startup_seconds": round(up, 1),
                "details": server.details,
                "log": str(server.log_path),
            }
            workload = Workload(server, config, workdir, log, running.database_url)
            results[key] = workload.results
            foreign = ForeignLoad([os.getpid(), server.pid, *running.helper_pids])
            workload.run()
            facts["workload_seconds"] = round(time.perf_counter() - began - up, 1)
            facts["other_processes_cores"] = round(foreign.cores(), 2)
    except Exception as error:
        log(f"{key}: FAILED: {' '.join(str(error).split())}")
        facts["error"] = str(error)
    finally:
        log(f"{key}: stopped after {time.perf_counter() - began:.0f}s")
        for data in server_dir.glob("*-data"):
            shutil.rmtree(data, ignore_errors=True)
    return facts


def main(argv: list[str]) -> int:
    args = parse_arguments(argv)
    config = make_config(args)
    keys = [key.strip() for key in args.servers.split(",") if key.strip()]
    unknown = sorted(set(keys) - set(ALL_SERVERS))
    if unknown:
        sys.exit(f"unknown servers: {', '.join(unknown)} (known: {', '.join(ALL_SERVERS)})")
    workdir = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    rows = operations(config)
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    log(f"config: {config}; work directory {workdir}")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    load_at_start = os.getloadavg()

    results: dict[str, dict[str, Result]] = {}
    about: dict[str, dict[str, Any]] = {}
    interrupted: str | None = None
    with client_environment(CLIENT_ENVIRONMENT):
        for key in keys:
            if args.wait_idle > 0:
                wait_for_quiet(args.wait_idle)
            try:
                about[key] = measure(key, args, config, workdir, results)
            except KeyboardInterrupt:
                log(f"{key}: interrupted; reporting what was measured")
                interrupted = key
                break

    seconds = time.perf_counter() - started
    options = {
        "argv": sys.argv[1:],
        "config": dataclasses.asdict(config),
        "servers": keys,
        "mlflow_workers": args.mlflow_workers,
        "mlflow_jobs": args.mlflow_jobs,
        "interrupted_during": interrupted,
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
    }
    data = report.record(
        operations=rows,
        results=results,
        servers=about,
        options=options,
        started=started_at,
        seconds=seconds,
    )
    report.write_json(args.out, data)

    print(report.table(rows, results, keys))
    print()
    print(
        "Figures: ms = median latency; metrics/s, runs/s, MiB/s = throughput; "
        "MiB = largest RSS growth of the server's processes."
    )
    print(
        "Ratios: modelreg's figure / the other server's (sqlite / pg); for ms and MiB "
        "lower is better for modelreg, for /s higher is better."
    )
    for key, facts in about.items():
        if "error" in facts:
            print(f"SERVER FAILED {key}: {facts['error']}")
        elif facts.get("other_processes_cores", 0) > 0.1:
            print(
                f"busy machine during {key}: other processes kept "
                f"{facts['other_processes_cores']:.2f} cores busy"
            )
    for line in report.problems(rows, results):
        print(line)
    if interrupted:
        print(f"INTERRUPTED during {interrupted}: later servers were not measured")
    print(f"\n{len(keys)} servers in {seconds / 60:.1f} min; JSON written to {args.out}")
    return 130 if interrupted else 0
