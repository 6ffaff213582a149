"""Job handlers, one module per job kind."""
