"""The errors that stop a command, each with its exit code in the command line.

Everything a user can get wrong in the definitions is a `Diagnostic` (exit 1), not an
exception; these are the rest.
"""

from __future__ import annotations


class UsageError(Exception):
    """A problem with how expc was called, or with an input that is not definitions
    (a folder, a revision, a bundle file, an output destination): exit 2."""


class TargetError(Exception):
    """The definitions are valid but a requested target cannot express them: exit 1,
    nothing written."""
