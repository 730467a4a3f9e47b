"""Exception tree and exit codes.

Every error that reaches the command line is a `SymphonyError` subclass whose
`exit_code` the CLI wrapper returns, so commands contain no error handling.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit statuses of the `symphony` command, documented in the README and `--help`."""

    OK = 0
    MESSAGES_NOT_ENQUEUED = 1  # a message was invalid, rejected, a conflict or failed
    USAGE = 2  # bad flag, setting or configuration file
    INPUT_UNREADABLE = 3  # missing file, a directory, undecodable input
    STORE_UNAVAILABLE = 4  # the store cannot be opened or reached
    LOCKED = 5  # another run holds the --lock name
    INTERRUPTED = 130  # Ctrl-C or SIGTERM, as shells report SIGINT (128 + 2)


class SymphonyError(Exception):
    """Base class of every error symphony raises on purpose."""

    exit_code: ExitCode = ExitCode.MESSAGES_NOT_ENQUEUED


class ConfigError(SymphonyError):
    """A setting, flag or configuration file is invalid."""

    exit_code = ExitCode.USAGE


class InputError(SymphonyError):
    """The input file cannot be read at all (not one message in it)."""

    exit_code = ExitCode.INPUT_UNREADABLE


class StoreError(SymphonyError):
    """The store cannot be opened, reached or used."""

    exit_code = ExitCode.STORE_UNAVAILABLE


class SchemaMissingError(StoreError):
    """The store's tables do not exist and automatic creation is off."""


class LockedError(SymphonyError):
    """Another run holds the named lock."""

    exit_code = ExitCode.LOCKED


class KeyNotFoundError(SymphonyError):
    """`dedup inspect` was given a key that the store does not contain."""

    exit_code = ExitCode.MESSAGES_NOT_ENQUEUED
