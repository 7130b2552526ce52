"""Errors that reach the user as a one-line message with the fix.

Every error raised for bad input (unknown names, bad files, missing weights) derives from
MagbenchError so the CLI can print it without a traceback and exit non-zero.
"""

from __future__ import annotations

import errno


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


class StorageError(MagbenchError):
    """A file could not be written (read-only file system, full disk, no permission); the message
    names the path and the fix. Stops the run: every later write would fail the same way."""


# errno -> (what happened, what to do about it), for :func:`storage_error`.
_STORAGE_FIXES = {
    errno.EROFS: ("read-only file system", "write to a folder on a writable disk (another --out), or copy the run there first"),
    errno.ENOSPC: ("no space left on the device", "free some space and re-run the same command (finished results are kept), or use --out on another disk"),
    errno.EDQUOT: ("disk quota exceeded", "free some space and re-run the same command (finished results are kept), or use --out on another disk"),
    errno.EACCES: ("permission denied", "use a folder you can write to (another --out), or fix its permissions"),
    errno.EPERM: ("operation not permitted", "use a folder you can write to (another --out), or fix its permissions"),
}


def storage_error(exc: BaseException, path: object = None) -> StorageError | None:
    """``exc`` as a one-line :class:`StorageError` naming the path the OS error names (else
    ``path``) when it is a read-only, full-disk or permission error; None for any other error."""
    if isinstance(exc, StorageError):
        return exc
    if not isinstance(exc, OSError) or exc.errno not in _STORAGE_FIXES:
        return None
    where = exc.filename if exc.filename is not None else path
    problem, fix = _STORAGE_FIXES[exc.errno]
    return StorageError(f"{where if where is not None else 'writing a file'}: {problem}; {fix}")


class RunConfigMismatchError(MagbenchError):
    """A run folder already holds results written with a different configuration."""
