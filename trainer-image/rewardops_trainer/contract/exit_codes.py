"""Trainer exit codes: the Job's podFailurePolicy tells permanent from transient failures."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: An unexpected crash; the Job may retry it.
    CRASH = 1
    #: Command-line usage error (click's own code).
    USAGE = 2
    #: Bad run config, bad data, too few pairs, unloadable model: retrying cannot help.
    CONFIG_OR_DATA = 3
    #: Object store unreachable, timeouts and the like: worth retrying.
    TRANSIENT = 4
    #: Stopped by SIGINT/SIGTERM after writing a checkpoint.
    INTERRUPTED = 130


#: Exit codes after which the Job must fail at once instead of retrying.
PERMANENT_EXIT_CODES = (ExitCode.USAGE, ExitCode.CONFIG_OR_DATA)
