"""Background jobs: the outbox, the runners, deletion, purge and package migration."""
