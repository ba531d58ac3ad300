"""User-facing errors.

A :class:`LorascopeError` is a problem with the user's input (a file, a key, a value): the CLI
prints its message on one line and exits with status 2, without a traceback, and removes the
output folder (and ``.partial``) that the command created (``lorascope.cli.common.user_errors``).
Anything else is a bug and keeps its traceback. Raise one where the bad input is found, with a
message that names the file (and line), the key or the row, and what was expected; convert a
library's exception into one only where it can only mean bad input.
"""


class LorascopeError(ValueError):
    """Bad input: the message names the file, key or row and what was expected."""


class ConfigError(LorascopeError):
    """A configuration key is unknown, has the wrong type, or an invalid value."""


class DataError(LorascopeError):
    """A data file is missing, malformed, or does not match the task's specification."""
