"""`modelreg import-mlflow`: open the source, the database and the artifact store, run
the import (unless `--dry-run` writes nothing, it only counts), then `--verify`.

Output: a progress bar per phase on stderr and a summary table on stdout; JSON lines
on stdout with `--json` (the last line is ``{"event": "summary", "import": {...},
"verify": {...}}``); only warnings and errors with `--quiet`. Exit 0 when done, 4 when
`--verify` found differences, and the usual codes otherwise (3 when the source, the
database or the store does not answer).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from app import preflight
from app.db import Database
from app.importing.mlflow_source import MlflowSource, SourceError
from app.importing.progress import ConsoleProgress, Mode
from app.importing.runner import ImportOptions, ImportSummary, import_mlflow_server
from app.importing.verify import MlflowVerification, Verification
from app.settings import Settings
from app.storage import create_artifact_store

EXIT_DIFFERENCES = 4


@dataclass(frozen=True)
class ImportRequest:
    source_url: str
    token: str | None
    project_path: str
    options: ImportOptions
    verify: bool
    mode: Mode


async def import_mlflow(settings: Settings, request: ImportRequest) -> int:
    """Run the import the request describes; returns the exit code."""
    # A log line per request to the source would drown the progress.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    database = Database(settings.resolved_database_url)
    store = create_artifact_store(settings)
    progress = ConsoleProgress(request.mode)
    summary: ImportSummary | None = None
    verification: Verification | None = None
    try:
        await preflight.check_database(database, settings, require_head=True)
        await store.start()
        summary = await import_mlflow_server(
            database,
            store,
            source_url=request.source_url,
            token=request.token,
            project_path=request.project_path,
            options=request.options,
            progress=progress,
        )
        if request.verify:
            async with MlflowSource(request.source_url, token=request.token) as source:
                verification = await MlflowVerification(
                    source,
                    database,
                    project_path=request.project_path,
                    options=request.options,
                    progress=progress,
                ).run()
    except SourceError as error:
        raise preflight.UnavailableError(f"cannot read the MLflow server: {error}") from None
    finally:
        progress.close()
        await store.close()
        await database.dispose()
    _print_outcome(request.mode, summary, verification)
    return EXIT_DIFFERENCES if verification is not None and verification.differences else 0


def _print_outcome(mode: Mode, summary: ImportSummary, verification: Verification | None) -> None:
    if mode == "json":
        event = {
            "event": "summary",
            "import": summary.as_dict(),
            "verify": verification.as_dict() if verification is not None else None,
        }
        print(json.dumps(event), flush=True)
        return
    if mode == "quiet":
        for difference in verification.differences if verification is not None else []:
            print(f"differs: {difference}")
        return
    kinds = sorted(set(summary.written) | set(summary.existing) | set(summary.skipped))
    print(f"{'KIND':<22}{'WRITTEN':>12}{'ALREADY HERE':>14}{'SKIPPED':>9}")
    for kind in kinds:
        print(
            f"{kind:<22}{summary.written[kind]:>12,}{summary.existing[kind]:>14,}"
            f"{summary.skipped[kind]:>9,}"
        )
    if verification is not None:
        print()
        print(f"{'VERIFIED':<22}{'SOURCE':>12}{'HERE':>14}")
        for kind in sorted(set(verification.source) | set(verification.destination)):
            print(
                f"{kind:<22}{verification.source[kind]:>12,}{verification.destination[kind]:>14,}"
            )
        for difference in verification.differences:
            print(f"differs: {difference}")
        if not verification.differences:
            print("no differences")
