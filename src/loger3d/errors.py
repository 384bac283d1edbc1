"""The one root of the errors a user can cause or meet, and the exit status each gives on the command line.

Library functions raise these with a one-line message that names the problem and the fix; the
command line prints ``loger3d: error: <message>`` and exits with the error's ``exit_code``
(README's table). Errors a user can cause with input or options are also ``ValueError``s, as
before this root existed. A plain ``ValueError`` is kept for preconditions only loger3d's own code
can break (array shapes inside the model, internal invariants): the command line shows those as
tracebacks, since they are bugs.
"""

from __future__ import annotations

import errno
import os

__all__ = ["DamagedFileError", "InputError", "LogerError", "OutputError", "WeightsError", "describe_os_error",
           "one_line"]


class LogerError(Exception):
    """A problem the message explains in one line; the command line exits with ``exit_code``."""

    exit_code = 2


class InputError(LogerError, ValueError):
    """Input or options the command cannot use (a trajectory file, a metric's input, an export or model option);
    the message names the problem and the fix. The more specific errors below and in the packages say which."""


class DamagedFileError(LogerError, ValueError):
    """A file loger3d wrote earlier (run record, resume state, frame store chunk) is unreadable or cut short."""


class WeightsError(LogerError, ValueError):
    """A checkpoint that cannot be found, read or used; the message is one line with the fix."""


class OutputError(LogerError, OSError):
    """An output could not be written: disk full, no permission, a read-only filesystem. Exit status 4."""

    exit_code = 4

    def __str__(self) -> str:  # the message alone, not OSError's "[Errno N] ..." form
        return str(self.args[0]) if self.args else ""


_NO_SPACE = (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC))
_NO_PERMISSION = (errno.EACCES, errno.EPERM, errno.EROFS)


def describe_os_error(error: OSError, path: str | os.PathLike) -> str:
    """``error``, met while writing ``path``, as the reason and the fix (one line)."""
    if error.errno in _NO_SPACE:
        return f"no space left to write {os.fspath(path)} ({error.strerror}); free some space"
    if error.errno in _NO_PERMISSION:
        return f"cannot write {os.fspath(path)}: {error.strerror}; choose a folder you can write to"
    return f"cannot write {os.fspath(path)}: {' '.join(str(error.strerror or error).split())}"


def one_line(error: BaseException | str, limit: int = 200) -> str:
    """An error's text on one line, cut to ``limit`` characters."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
