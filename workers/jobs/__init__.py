"""Job handlers: what each job kind does, in batches that a retry can resume."""
