"""The pure reconcile core: no I/O, no kopf, no kubernetes client."""
