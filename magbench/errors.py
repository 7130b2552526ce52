"""Errors that reach the user as a one-line message with the fix.

Every error raised for bad input (unknown names, bad files, missing weights) derives from
MagbenchError so the CLI can print it without a traceback and exit non-zero.
"""

from __future__ import annotations


class MagbenchError(Exception):
    """An error whose message is meant for the user: it names the thing and the fix."""


class UnknownNameError(MagbenchError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingWeightsError(MagbenchError):
    """Weights are neither cached nor reachable; the message names the download command."""


class NotAvailableError(MagbenchError):
    """A registered component whose implementation does not exist in this version."""


class DatasetError(MagbenchError):
    """A dataset (CSV, folder, hub copy) is unusable as a whole."""


class SampleError(MagbenchError):
    """One sample cannot be used (missing, corrupt or too short video); recorded, the run goes on."""


class RunConfigMismatchError(MagbenchError):
    """A run folder already holds results written with a different configuration."""
