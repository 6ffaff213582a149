"""The report: a table for the terminal and the JSON record of a run."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from bench.workload import Operation, Result

SERVER_ORDER = ["floor", "mlflow", "fasttrackml", "modelreg-sqlite", "modelreg-pg", "modelreg-pg-2"]
SERVER_TITLES = {
    "floor": "floor",
    "mlflow": "MLflow",
    "fasttrackml": "FastTrackML",
    "modelreg-sqlite": "modelreg sqlite",
    "modelreg-pg": "modelreg pg",
    "modelreg-pg-2": "modelreg pg x2",
}
MODELREG = ["modelreg-sqlite", "modelreg-pg"]
BASELINES = ["mlflow", "fasttrackml", "floor"]

Results = dict[str, dict[str, Result]]


def _figure(results: Results, server: str, operation: Operation) -> float | None:
    result = results.get(server, {}).get(operation.key)
    return result.figure(operation) if result is not None else None


def ratios(operations: list[Operation], results: Results) -> dict[str, dict[str, float]]:
    """modelreg's figure divided by each baseline's, per operation, where both exist."""
    found: dict[str, dict[str, float]] = {}
    for operation in operations:
        for modelreg in MODELREG:
            mine = _figure(results, modelreg, operation)
            for baseline in BASELINES:
                theirs = _figure(results, baseline, operation)
                # Memory growth below 1 MiB is sampling noise: no ratio for it.
                floor = 1.0 if operation.kind == "peak" else 0.0
                if mine is not None and theirs and min(mine, theirs) >= floor:
                    found.setdefault(operation.key, {})[f"{modelreg}/{baseline}"] = mine / theirs
    return found


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(results: Results, server: str, operation: Operation) -> str:
    if server not in results:
        return "-"
    result = results[server].get(operation.key)
    if result is None:
        return "-"
    if result.skipped:
        return "n/a"
    if result.error:
        return "ERROR"
    value = result.figure(operation)
    return "-" if value is None else _number(value)


def _ratio_cell(found: dict[str, float], baseline: str) -> str:
    parts = [found.get(f"{modelreg}/{baseline}") for modelreg in MODELREG]
    if all(part is None for part in parts):
        return "-"
    return " / ".join("-" if part is None else f"{part:.2f}" for part in parts)


def table(operations: list[Operation], results: Results, servers: list[str]) -> str:
    """The figures per server, and modelreg (sqlite / pg) divided by each baseline."""
    found = ratios(operations, results)
    header = [
        "operation",
        "unit",
        *(SERVER_TITLES[server] for server in servers),
        *(f"mr/{SERVER_TITLES[b]} (sq / pg)" for b in BASELINES),
    ]
    rows = [header]
    for operation in operations:
        if not any(operation.key in results.get(server, {}) for server in servers):
            continue
        rows.append(
            [
                operation.label,
                operation.unit,
                *(_cell(results, server, operation) for server in servers),
                *(_ratio_cell(found.get(operation.key, {}), b) for b in BASELINES),
            ]
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = []
    for number, row in enumerate(rows):
        cells = [
            cell.ljust(widths[column]) if column < 2 else cell.rjust(widths[column])
            for column, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def problems(operations: list[Operation], results: Results) -> list[str]:
    """Every error and note, one line each."""
    lines = []
    for server in SERVER_ORDER:
        for operation in operations:
            result = results.get(server, {}).get(operation.key)
            if result is None:
                continue
            if result.error:
                lines.append(f"ERROR {server} / {operation.label}: {result.error}")
            lines += [f"note  {server} / {operation.label}: {note}" for note in result.notes]
    return lines


# --- the machine -------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_bytes": memory,
        "memory_gib": round(memory / 1024**3, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def record(
    *,
    operations: list[Operation],
    results: Results,
    servers: dict[str, dict[str, Any]],
    options: dict[str, Any],
    started: str,
    seconds: float,
) -> dict[str, Any]:
    """Everything about a run, for the JSON file."""
    return {
        "date": started,
        "duration_seconds": round(seconds, 1),
        "options": options,
        "machine": machine(),
        "servers": servers,
        "operations": [
            {
                "key": operation.key,
                "label": operation.label,
                "unit": operation.unit,
                "figure": {
                    "latency": "median of the samples, in ms",
                    "throughput": f"{operation.amount:g} {operation.unit.split('/')[0]} "
                    "per median second",
                    "rate": f"{operation.amount:g} {operation.unit.split('/')[0]} "
                    "over the total of the samples",
                    "peak": "largest sample",
                }[operation.kind],
                "higher_is_better": operation.higher_is_better,
            }
            for operation in operations
        ],
        "results": {
            server: {
                key: {
                    "figure": result.figure(next(op for op in operations if op.key == key)),
                    "samples": result.samples,
                    "sample_unit": "MiB" if key.endswith("_rss") else "s",
                    "error": result.error,
                    "skipped": result.skipped,
                    "notes": result.notes,
                }
                for key, result in by_operation.items()
            }
            for server, by_operation in results.items()
        },
        "ratios": ratios(operations, results),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
