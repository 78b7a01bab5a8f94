"""Errors that decide the trainer's exit code (see contract.exit_codes)."""


class ConfigError(Exception):
    """The run config or a model it names is unusable; retrying cannot help."""


class DataError(Exception):
    """The telemetry cannot give a useful run (too many rejects, too few pairs)."""
