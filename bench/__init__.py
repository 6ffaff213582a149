"""Benchmark harness: modelreg against MLflow's server, FastTrackML and a do-nothing floor."""
