"""User-facing errors.

A :class:`LorascopeError` is a problem with the user's input (a file, a key, a value): the CLI
prints its message on one line and exits with status 2, without a traceback. Anything else is a
bug and keeps its traceback.
"""


class LorascopeError(ValueError):
    """Bad input: the message names the file, key or row and what was expected."""


class ConfigError(LorascopeError):
    """A configuration key is unknown, has the wrong type, or an invalid value."""


class DataError(LorascopeError):
    """A data file is missing, malformed, or does not match the task's specification."""
