"""The rules of modelreg. Every surface (GraphQL, MLflow, REST, CLI) calls these."""
