"""modelreg: a self-hosted ML model registry with experiment tracking built in."""

__version__ = "0.1.0"
