"""Background work: job handlers, the runner, and the two transports (arq and in-process)."""
