"""A container engine and registry-free images for compose.yaml and the container tests.

``python3 -m tools.containers setup|build|compose|health|env`` (see cli.py). The engine is
podman from Debian's packages with its Docker-compatible API on ``/run/podman/podman.sock``, so
the ``docker-compose`` binary and testcontainers drive it as they would Docker.
"""
