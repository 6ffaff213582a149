"""Running the service: the CLI, startup checks, migrations, compose and the frontend build."""
