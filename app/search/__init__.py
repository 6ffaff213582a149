"""MLflow's search language (`filter_string`, `order_by`, page tokens), compiled to SQL.
The MLflow surface uses it for its searches, GraphQL for `Model.candidates(filter)`.

The MLflow searches map onto our tables:

=====================  =================  ========================================================
MLflow search          rows               compiled by
=====================  =================  ========================================================
runs                   `Candidate`        `runs.compile_run_filter`, `..._order_by`
experiments            `Model`            `models.compile_experiment_filter`, `..._order_by`
registered models      `Model`            `models.compile_registered_model_filter`, `..._order_by`
model versions         `ModelVersion`     `versions.compile_model_version_filter`, `..._order_by`
logged models          `LoggedModel`      `app.mlflow.logged_models.compile_filter`
=====================  =================  ========================================================

Every filter compiles to conditions on the row's own table: correlated EXISTS (or IN)
subqueries reach metrics, params and metadata through their primary keys, so a caller
writes ``select(Candidate).where(scope..., *conditions).order_by(*orders)`` and nothing
is filtered in Python. The caller adds the scope (project, model, lifecycle state,
`registered`); these functions add only what the strings ask for.

Grammar: comparisons joined by AND (MLflow has no OR and no parentheses)::

    metrics.accuracy > 0.9 AND params.optimizer = 'adam' AND tags.`team name` LIKE 'vis%'
    attributes.status IN ('FINISHED', 'FAILED') AND run_name ILIKE '%baseline%'
    params.seed IS NULL

An identifier is ``<entity>.<key>``, or a bare ``<key>`` for an attribute. Keys holding
characters other than letters, digits, ``_ . - / :`` are quoted with backticks or double
quotes. String values take single or double quotes (a quote inside is doubled: ``'it''s'``);
numbers may be signed and use exponents. Keywords are case-insensitive, entity
prefixes and keys are not.

Where MLflow leaves the meaning open, this package decides as follows:

* LIKE is case-sensitive and ILIKE is not, on SQLite as on PostgreSQL. ``%`` and ``_`` are
  wildcards and a backslash makes the next character literal (``'50\\%'``). SQLite's own
  LIKE ignores ASCII case, so there a case-sensitive LIKE compiles to GLOB with the
  pattern translated (see `sql._Like`). SQLite folds only ASCII letters for ILIKE.
* NaN metrics are stored as NULL with `is_nan` set; they follow IEEE comparisons: no
  ordered comparison or ``=`` matches NaN, ``!=`` does.
* ``!=`` on a param or tag only matches rows that have the key (MLflow's inner join); use
  ``IS NULL`` for rows without it. The one exception is the registry's prompt tag,
  handled as MLflow's registry store does (see `models.compile_registered_model_filter`).
* ``dataset.name``, ``dataset.digest`` and ``dataset.context`` match a run that has at least
  one dataset input whose name, digest or ``mlflow.data.context`` tag compares true (MLflow's
  inner join): ``dataset.name != 'x'`` matches a run with any other dataset input.
* Sorting puts values first, then NaN metrics, then rows without the metric, param, tag
  or attribute, whichever the direction (MLflow's order). Strings sort by code point on
  every backend (``COLLATE "C"`` on PostgreSQL), as MLflow's Python sort does.

The package, one module per concern; callers import from the module that owns a name:

* `grammar`: the scanner, `parse_filter`/`parse_order_by`, `Comparison`, `OrderBy`,
  `SearchSchema` (what each search accepts) and `SearchError`. No SQL.
* `sql`: the dialect-aware pieces every search compiles with (LIKE, code-point order,
  string, integer, epoch-millisecond and metric-value conditions) and the conversions
  between datetimes and MLflow's milliseconds.
* `runs`, `models` (experiments and registered models), `versions`: one search each.
* `paging`: MLflow's max_results limits, page tokens and `Page`; here rather than in the
  MLflow surface because services read a `Page` (`runs.fetch_runs` among them).
"""
