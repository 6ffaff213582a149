"""The MLflow surface, driven by the real mlflow client and raw REST: tracking, registry,
artifacts, logged models, search."""
