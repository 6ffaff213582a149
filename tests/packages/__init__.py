"""The package API and the artifact stores behind it (local directory and S3)."""
