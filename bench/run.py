"""Benchmark modelreg against MLflow's server, FastTrackML and a do-nothing floor.

    python3 bench/run.py [--quick] [--runs N] [--repeat N] [--scale 1000,10000,100000]
                         [--out bench/results.json]

Starts each server in turn on a free loopback port, drives it with the same MLflow client
workload, stops it by its process id, then prints a table and writes the JSON record.
It runs inside the repository's venv (its mlflow client and modelreg itself), re-starting
itself there when called with another Python.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REPO_VENV = REPO / ".venv"


def main() -> int:
    if Path(sys.prefix).resolve() != REPO_VENV.resolve():
        python = REPO_VENV / "bin" / "python"
        if not python.is_file():
            sys.exit(f"the repository's venv is missing: {python}")
        os.execv(str(python), [str(python), *sys.argv])
    sys.path.insert(0, str(REPO))
    from bench.harness import main as run_benchmark

    return run_benchmark(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
