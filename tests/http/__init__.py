"""The HTTP plumbing every surface shares: bodies, stalls, probes, metrics, database outages."""
