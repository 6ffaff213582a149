"""What the workload logs, shared by the workload and the floor server's canned answers."""

from __future__ import annotations

import random

# A run of the ingest workload: 20 params and 50 metric keys logged at 20 steps.
INGEST_PARAMS = [f"p{i}" for i in range(20)]
INGEST_METRICS = [f"m{i}" for i in range(50)]
INGEST_STEPS = 20

# A run seeded for the search workload: three params and three metrics, one step each.
SEARCH_PARAMS = ["optimizer", "lr", "batch_size"]
SEARCH_METRICS = ["loss", "accuracy", "m0"]
OPTIMIZERS = ["adam", "adam", "adam", "sgd"]

# The filtered, metric-ordered top-100 search (about two runs in three match): keep
# SEARCH_FILTER and matches_filter in step.
SEARCH_FILTER = "metrics.loss < 0.9 and params.optimizer = 'adam'"
SEARCH_ORDER = ["metrics.accuracy DESC"]
SEARCH_TOP = 100
SEARCH_WIDE = 1000


def search_run_values(index: int) -> tuple[dict[str, str], dict[str, float]]:
    """Params and metrics of the index-th seeded search run, the same on every server."""
    rng = random.Random(index)
    params = {
        "optimizer": OPTIMIZERS[index % len(OPTIMIZERS)],
        "lr": f"{10 ** -rng.uniform(1, 4):.6f}",
        "batch_size": str(2 ** rng.randint(4, 9)),
    }
    metrics = {"loss": rng.random(), "accuracy": rng.random(), "m0": rng.random()}
    return params, metrics


def matches_filter(index: int) -> bool:
    """Whether the index-th seeded search run passes SEARCH_FILTER."""
    params, metrics = search_run_values(index)
    return metrics["loss"] < 0.9 and params["optimizer"] == "adam"


def expected_matches(count: int, limit: int) -> int:
    """How many runs a search limited to `limit` finds among the first `count` seeded."""
    return min(limit, sum(1 for index in range(count) if matches_filter(index)))
