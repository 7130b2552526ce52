"""Errors of the reports: one-line messages naming the file (or run) and the fix."""

from __future__ import annotations

from magbench.errors import MagbenchError


class ReportError(MagbenchError):
    """Base of every error raised by ``magbench.reports``."""


class IncompatibleRunsError(ReportError):
    """Two runs cannot be compared: different dataset or protocol."""


class NoSharedSamplesError(ReportError):
    """Two runs have no successfully scored sample in common."""


class UnknownMetricError(ReportError):
    """A metric key was asked for that no run reports."""
