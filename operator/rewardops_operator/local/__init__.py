"""The local driver: the reconcile core with local processes and a local object store."""
