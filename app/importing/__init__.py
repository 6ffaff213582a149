"""Moving in from MLflow: `modelreg import-mlflow` copies a live MLflow tracking server
(2.x or 3.x, read through its REST API) into a project, keeping every id code already
uses: run ids, logged model ids, registered model names, version numbers and aliases.

`mlflow_source` reads the source, `runner` writes through the services in phases
(resumable and idempotent), `verify` compares both sides, `progress` shows where it is,
`command` ties them together for the command line, and `job` runs the same import
as a job (`projectImportMlflow`).
"""
