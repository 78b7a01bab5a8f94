"""Kubernetes manifests (pure builders) and the thin API adapter."""
