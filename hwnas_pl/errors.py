"""The error type for bad user input.

Errors of this type carry one sentence saying what was wrong and what was expected; the ``hwnas`` command prints
that sentence without a traceback (set ``HWNAS_DEBUG=1`` to see it). Other exceptions are bugs and keep their
traceback.
"""


class UserInputError(Exception):
    """Bad input from the user (a file, a config value, data): the message says what was expected."""


class ConfigError(UserInputError, ValueError):
    """A configuration value is invalid or names something that does not exist."""
