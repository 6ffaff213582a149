"""Running the `modelreg` command as an operator does: a real process, a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MODELREG = str(Path(sys.executable).with_name("modelreg"))
COMMAND_TIMEOUT = 60.0


def clean_environment(**settings: str) -> dict[str, str]:
    """The current environment without any MODELREG_* variable, plus `settings`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    environment.update(settings)
    return environment


def run_modelreg(
    *arguments: str, cwd: Path, environment: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MODELREG, *arguments],
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
