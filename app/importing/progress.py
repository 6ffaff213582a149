"""How an import tells the person or script running it where it is.

Three modes, one interface (`ImportProgress`):

* ``bars``: one rich progress bar per phase on stderr, with its count, rate and ETA;
* ``json``: JSON lines on stdout, one object per event: ``{"event": "phase", "phase",
  "total"}`` when a phase starts, ``{"event": "progress", "phase", "done", "total",
  "bytes"}`` at most twice a second and when it ends, ``{"event": "warning", "message"}``
  for anything skipped, and the caller's summary last;
* ``quiet``: warnings only, on stderr.

An import run as a job records the same events on the job instead (`JobProgress`).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Literal, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from app.db import Database
from app.services import jobs

Mode = Literal["bars", "json", "quiet"]
JSON_INTERVAL_SECONDS = 0.5
JOB_INTERVAL_SECONDS = 1.0
MAX_JOB_WARNINGS = 20


class ImportProgress(Protocol):
    def start_phase(self, phase: str, total: int) -> None: ...

    async def advance(self, phase: str, count: int = 1, *, size: int = 0) -> None: ...

    def warn(self, message: str) -> None: ...

    def close(self) -> None: ...


class _Rate(TextColumn):
    """Items per second of the phase (and MiB/s when it moves bytes)."""

    def __init__(self) -> None:
        super().__init__("")

    def render(self, task: Any) -> Any:
        elapsed = task.elapsed or 0.0
        rate = task.completed / elapsed if elapsed > 0 else 0.0
        text = f"{rate:,.1f}/s"
        size = task.fields.get("size", 0)
        if size:
            text += f"  {size / 2**20:,.1f} MiB ({size / 2**20 / max(elapsed, 1e-9):,.1f} MiB/s)"
        return text


class ConsoleProgress:
    """Bars on stderr, JSON lines on stdout, or nothing but warnings."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self._errors = Console(stderr=True)
        self._bars: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._state: dict[str, list[int]] = {}  # phase -> [done, total, bytes]
        self._last_line = 0.0
        if mode == "bars":
            self._bars = Progress(
                TextColumn("{task.description:<16}"),
                BarColumn(),
                MofNCompleteColumn(),
                _Rate(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self._errors,
            )
            self._bars.start()

    def start_phase(self, phase: str, total: int) -> None:
        self._state[phase] = [0, total, 0]
        if self._bars is not None:
            self._tasks[phase] = self._bars.add_task(phase, total=total, size=0)
        elif self.mode == "json":
            self._line({"event": "phase", "phase": phase, "total": total})

    async def advance(self, phase: str, count: int = 1, *, size: int = 0) -> None:
        state = self._state[phase]
        state[0] += count
        state[2] += size
        if self._bars is not None:
            self._bars.update(self._tasks[phase], advance=count, size=state[2])
        elif self.mode == "json":
            now = time.monotonic()
            if state[0] >= state[1] or now - self._last_line >= JSON_INTERVAL_SECONDS:
                self._last_line = now
                done, total, moved = state
                self._line(
                    {
                        "event": "progress",
                        "phase": phase,
                        "done": done,
                        "total": total,
                        "bytes": moved,
                    }
                )

    def warn(self, message: str) -> None:
        if self.mode == "json":
            self._line({"event": "warning", "message": message})
        else:
            self._errors.print(f"modelreg: warning: {message}", highlight=False, markup=False)

    def close(self) -> None:
        if self._bars is not None:
            self._bars.stop()

    @staticmethod
    def _line(event: dict[str, Any]) -> None:
        print(json.dumps(event), file=sys.stdout, flush=True)


class JobProgress:
    """An import's progress recorded on its job, which `jobUpdated` subscribers and the
    Jobs page show: ``{"phase": the current one, "phases": {phase: {"done", "total",
    "bytes"}}, "warnings": the last few}``, and once it ended ``"summary"``: what it
    wrote, found already here and skipped, by kind. Saved when a phase ends and at most
    once a second in between; `finish` saves the last state."""

    def __init__(self, database: Database, job_id: int) -> None:
        self._database = database
        self._job_id = job_id
        self._current: str | None = None
        self._phases: dict[str, dict[str, int]] = {}
        self._warnings: list[str] = []
        self._summary: dict[str, Any] | None = None
        self._saved_at = 0.0

    def start_phase(self, phase: str, total: int) -> None:
        self._current = phase
        self._phases[phase] = {"done": 0, "total": total, "bytes": 0}

    async def advance(self, phase: str, count: int = 1, *, size: int = 0) -> None:
        state = self._phases[phase]
        state["done"] += count
        state["bytes"] += size
        now = time.monotonic()
        if state["done"] >= state["total"] or now - self._saved_at >= JOB_INTERVAL_SECONDS:
            self._saved_at = now
            await self._save()

    def warn(self, message: str) -> None:
        self._warnings = [*self._warnings, message][-MAX_JOB_WARNINGS:]

    def close(self) -> None:
        """Nothing to release: every save is a transaction of its own."""

    async def finish(self, summary: dict[str, Any]) -> None:
        self._summary = summary
        await self._save()

    async def _save(self) -> None:
        progress: dict[str, Any] = {
            "phase": self._current,
            "phases": self._phases,
            "warnings": self._warnings,
        }
        if self._summary is not None:
            progress["summary"] = self._summary
        await jobs.save_progress(self._database, self._job_id, progress)
