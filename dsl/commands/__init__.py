"""The `repro` commands, one module per command group, each with ``register(app)`` (dsl/cli.py lists them)."""
