"""trnlab's exceptions and warnings.

Every error a user can cause names the file or field, the value, and what is allowed, in one
line, so the CLI can print ``str(err)`` and exit with status 2.
"""

from __future__ import annotations


class TrnlabError(ValueError):
    """Base class of errors caused by bad input (the CLI prints one line, exit code 2).

    A ``ValueError``: code that guards a call with ``except ValueError`` also catches it.
    """


class CatalogError(TrnlabError):
    """A hardware, model or measurement file is malformed, or an id is unknown."""


class BackendError(TrnlabError):
    """An array backend was asked for that is unknown or unavailable."""


class ParameterError(TrnlabError):
    """A parameter (CLI, notebook or function argument) has a wrong name, type or value."""


class ReportError(TrnlabError):
    """A report could not be started (unknown notebook, bad output directory)."""


class TrnlabWarning(UserWarning):
    """Warnings issued by trnlab itself (errors under the test suite)."""


def bad_value(where: str, field: str, value: object, allowed: str) -> str:
    """Format the one-line message ``<where>: <field> = <value!r>: <allowed>``."""
    return f"{where}: {field} = {value!r}: {allowed}"
