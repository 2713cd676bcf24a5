"""The running service: settings, wire messages, gateway, worker, pipeline and CLI commands."""
