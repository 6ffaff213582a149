"""A real `modelreg worker` process for tests and benchmarks that need one: its settings
come from the environment, as in production, and it is stopped through its process id."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from app.settings import Settings
from tests.services import stop_process

STARTUP_SECONDS = 30.0

_worker_numbers = itertools.count(1)


@contextlib.contextmanager
def worker_process(
    settings: Settings, workdir: Path, names: Sequence[str]
) -> Iterator[subprocess.Popen[bytes]]:
    """A `modelreg worker` given the settings `names` (and no other MODELREG_* variable)
    until the block ends; its log is `workdir/worker-<n>.log`."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("MODELREG_")
    }
    environment |= {f"MODELREG_{name.upper()}": str(getattr(settings, name)) for name in names}
    log_path = workdir / f"worker-{next(_worker_numbers)}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("modelreg")), "worker"],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while "Starting worker" not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the worker did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield process
    finally:
        stop_process(process)
