"""The errors sliver raises on purpose: one base, and the kind that is the user's to fix.

Every error class of sliver derives from :class:`SliverError`. A
:class:`UserError` is a mistake the user can fix (a config field, a file, an
option, a damaged store): its message is one line that names the field or file
and says what to do, and the CLI prints it without a traceback (exit code 2).
Anything else that escapes a command is a bug and keeps its traceback.

This module imports nothing, so every part of sliver (torch-free ones too) can
use it.
"""

from __future__ import annotations


class SliverError(Exception):
    """Base of every error sliver raises on purpose."""


class UserError(SliverError, ValueError):
    """A mistake the user can fix; the message is one line naming the field or file and the fix.

    It is also a ``ValueError`` because most user mistakes are bad values, and
    callers that catch ``ValueError`` keep working.
    """


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for wrapping into a UserError."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
