"""The benchmark of the replication path: ``python -m bench`` (see bench/README.md)."""
