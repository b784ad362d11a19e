"""Errors of sluice: one root, split into transient (retry) and terminal (dead-letter or stop)."""

from __future__ import annotations


class SluiceError(Exception):
    """Root of every error sluice raises on purpose."""


class TransientError(SluiceError):
    """Worth retrying: the service may come back (unreachable database, broker timeout)."""


class TerminalError(SluiceError):
    """Retrying cannot help: the input or the configuration must change."""


class ConfigError(TerminalError):
    """The configuration is invalid; the message says which field and how to fix it."""


class SourceConfigError(TerminalError):
    """The source server is not set up for change capture; the message says what to set."""


class PositionPurged(SourceConfigError):
    """The binlog a job must resume from was purged: changes in between cannot be read."""


class PoisonRecord(TerminalError):
    """A record that can never be applied; it goes to the dead-letter topic with this reason."""
