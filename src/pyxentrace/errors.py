"""The one exception type pyxentrace raises for bad input and bad requests."""

from __future__ import annotations


class XentraceError(Exception):
    """Bad input (a corrupt or unreadable trace, a bad option): one clear line for the user.

    ``path`` and ``offset`` name where the problem is, when known.
    """

    def __init__(self, message: str, *, path: str | None = None, offset: int | None = None):
        self.path = path
        self.offset = offset
        where = ""
        if path is not None:
            where = f"{path}: " if offset is None else f"{path}: offset {offset}: "
        super().__init__(where + message)
