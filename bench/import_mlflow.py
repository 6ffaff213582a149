"""Import throughput: `modelreg import-mlflow` from MLflow's own tracking server.

    .venv/bin/python -m bench.import_mlflow                      # 1,000 runs x 1,000 points
    .venv/bin/python -m bench.import_mlflow --runs 100 --points 100 --json

Starts `mlflow server` (SQLite, proxied artifacts; its venv as bench/servers.py makes
it), seeds `--runs` runs of one experiment with the real `mlflow` client, each with
`--points` steps of one metric, three params and one artifact of `--artifact-kib` KiB,
then imports them into a fresh modelreg SQLite database and reports, from the times the
import's JSON progress events arrive: runs/s and metric points/s of its runs phase
(reading the histories included), artifact MiB/s of its artifacts phase, and the whole
import's wall time. The import ends with `--verify`, whose differences must be none.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.servers import REPO, mlflow_server

MODELREG = str(REPO / ".venv" / "bin" / "modelreg")


def _seed(url: str, *, runs: int, points: int, artifact_kib: int, workdir: Path) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    client = MlflowClient(url)
    experiment = client.create_experiment("bench-import")
    artifact = workdir / "weights.bin"
    artifact.write_bytes(random.Random(1).randbytes(artifact_kib * 1024))

    def one(index: int) -> None:
        run = client.create_run(experiment, run_name=f"run-{index}")
        run_id = run.info.run_id
        for start in range(0, points, 1000):
            client.log_batch(
                run_id,
                metrics=[
                    Metric("loss", 1.0 / (step + 1), 1_700_000_000_000 + step, step)
                    for step in range(start, min(start + 1000, points))
                ],
                params=[Param(f"p{k}", str(index)) for k in range(3)] if start == 0 else [],
            )
        client.log_artifact(run_id, str(artifact))
        client.set_terminated(run_id)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(runs)))


def _import(url: str, workdir: Path) -> tuple[dict[str, float], dict[str, Any], float]:
    """Run the import; returns when each phase started (seconds from the start), the
    summary event and the wall time."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("MODELREG_", "MLFLOW_"))
    } | {"MODELREG_DATA_DIR": str(workdir / "modelreg")}
    subprocess.run([MODELREG, "migrate"], env=environment, check=True, capture_output=True)
    started = time.monotonic()
    process = subprocess.Popen(
        [MODELREG, "import-mlflow", "--from", url, "--project", "default", "--json", "--verify"],
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    phases: dict[str, float] = {}
    summary: dict[str, Any] = {}
    for line in process.stdout:
        event = json.loads(line)
        if event["event"] == "phase":
            phases[event["phase"]] = time.monotonic() - started
        elif event["event"] == "summary":
            summary = event
    if process.wait() != 0:
        raise SystemExit(f"the import failed (exit {process.returncode})")
    return phases, summary, time.monotonic() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/import_mlflow.py", description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--points", type=int, default=1000, help="metric steps per run")
    parser.add_argument("--artifact-kib", type=int, default=256, help="artifact size per run")
    parser.add_argument("--venvs", type=Path, default=REPO / "bench" / ".venvs")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-import-") as directory:
        workdir = Path(directory)
        with mlflow_server(workdir, args.venvs.resolve(), workers=1, jobs=False) as server:
            seed_started = time.monotonic()
            _seed(
                server.url,
                runs=args.runs,
                points=args.points,
                artifact_kib=args.artifact_kib,
                workdir=workdir,
            )
            seed_seconds = time.monotonic() - seed_started
            phases, summary, wall = _import(server.url, workdir)
    runs_seconds = phases["logged models"] - phases["runs"]
    artifact_seconds = phases["registry"] - phases["artifacts"]
    written = summary["import"]["written"]
    figures = {
        "runs": args.runs,
        "points_per_run": args.points,
        "artifact_kib": args.artifact_kib,
        "seed_seconds": round(seed_seconds, 1),
        "import_seconds": round(phases.get("verify runs", wall), 1),
        "runs_per_second": round(written.get("runs", 0) / runs_seconds, 1),
        "points_per_second": round(written.get("metric points", 0) / runs_seconds),
        "artifact_mib_per_second": round(
            written.get("artifact bytes", 0) / 2**20 / artifact_seconds, 1
        ),
        "verify_differences": len(summary["verify"]["differences"]),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:<26}{value}")
    if figures["verify_differences"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
