"""What charts and column choosers read, in few bytes.

`Model.candidateKeys`: the distinct metric, param and tag names the model's candidates
have logged (system tags under `mlflow.` left out), read from the table the logging
paths keep (app/services/candidate_keys.py), never by scanning candidates.

`Candidate.metricHistories`: several metric series of one candidate, each cut down to
at most `maxPoints` values as MLflow's get-history-bulk-interval cuts them (first and
last kept; app/services/candidates.py `sample_histories`), as parallel arrays rather
than edges. A history logged at consecutive steps (a training loop's) is read by index
seeks of its kept steps alone, whatever its length; any other numbers its points.
The arrays are scalars (`LongArray`, `MetricValueArray`: the same JSON arrays, serialized
at once rather than item by item). Values are as `MetricValue` writes MLflow's JSON for
doubles: a number, or one of the strings
"NaN", "Infinity", "-Infinity" (GraphQL's Float holds none of them; JavaScript's
`Number(value)` reads all four forms). Timestamps are MLflow's
milliseconds. Asked through `nodes(ids)` for several candidates, the series are read by
one per-request loader: one statement per distinct set of arguments, whatever the
number of candidates. Bounds, each refused as a VALIDATION_ERROR on the field: 20 names,
`maxPoints` 1 to 10,000 (1,000 by default), `minStep` not above `maxStep`, and at most
1,000,000 values for the charts the loader reads in one batch (those a request asks at
one level of its document).
"""

from __future__ import annotations

import strawberry

from app.graphql.types.common import LongArray, MetricValueArray
from app.services.candidate_keys import CandidateKeys as KeysOfModel
from app.services.candidates import MetricPoint


@strawberry.type(description="The distinct names logged by a model's candidates.")
class CandidateKeys:
    metrics: list[str]
    params: list[str]
    tags: list[str] = strawberry.field(description="Tags, without MLflow's system tags (mlflow.*).")

    @classmethod
    def from_keys(cls, keys: KeysOfModel) -> CandidateKeys:
        return cls(metrics=keys.metrics, params=keys.params, tags=keys.tags)


@strawberry.type(
    description="One metric's values at their steps, in (step, timestamp) order, as "
    "parallel arrays of the same length."
)
class MetricSeries:
    name: str
    steps: LongArray
    values: MetricValueArray
    timestamps: LongArray = strawberry.field(description="Milliseconds since the epoch.")

    @classmethod
    def from_points(cls, name: str, points: list[MetricPoint]) -> MetricSeries:
        return cls(
            name=name,
            steps=LongArray([point.step for point in points]),
            values=MetricValueArray([point.value for point in points]),
            timestamps=LongArray([point.timestamp for point in points]),
        )
