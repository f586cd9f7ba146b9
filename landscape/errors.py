"""Errors a user can act on (a bad config, missing data, a corrupt file).

The command line prints these as one line naming the file or key and the remedy; any other
exception is a bug and keeps its traceback in the job's log.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every error whose message alone tells the user what to fix."""


class ConfigError(UserError, ValueError):
    """A configuration value is not allowed."""
