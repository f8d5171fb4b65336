"""Errors a user can act on, each carrying the exit code the CLI and hooks promise."""

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_CANNOT_RUN = 3


class ProvgateError(Exception):
    """Base error: the message says what went wrong and what to do about it."""

    exit_code = EXIT_CANNOT_RUN


class ConfigError(ProvgateError):
    """A policy, catalogue or option is wrong: fix the named file or key."""

    exit_code = EXIT_USAGE


class ExifToolUnavailable(ProvgateError):
    """ExifTool is missing, too old, or will not start."""


class LedgerError(ProvgateError):
    """The ledger cannot be opened or written."""


class ActionError(ProvgateError):
    """A quarantine move or restore could not be done; the file was left where it was."""

    exit_code = EXIT_GATE_FAILED
