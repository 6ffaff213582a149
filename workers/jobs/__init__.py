"""Job handlers: what each job kind does, in batches that a retry can resume.

Each module declares its kinds beside its handlers (`@registry.handles(kind)`);
importing this package registers them all and checks that no kind lacks a handler.
"""

from workers import registry
from workers.jobs import (
    destruction,
    finalize_upload,
    import_mlflow,
    migrate_package_types,
    purge_deleted_runs,
    webhook_delivery,
)

__all__ = [
    "destruction",
    "finalize_upload",
    "import_mlflow",
    "migrate_package_types",
    "purge_deleted_runs",
    "webhook_delivery",
]

registry.require_every_kind()
