"""One exception hierarchy for mlsd.

Every error mlsd raises on purpose derives from :class:`MlsdError` and is defined here, in one
module, so that callers can catch by kind without importing the block that raised it. Messages
name what was given, what was expected and where (file, column, row). The CLI turns any
``MlsdError`` into a one-line message and exit status 2; the HTTP service maps them to status
codes at its edge.

The tree::

    MlsdError
      ConfigError (ValueError)          a configuration value or command-line option
      DataError (ValueError)            input data that cannot be used
        DataValidationError             ... breaking its contract; carries every Problem
        BundleError                     a model bundle missing, malformed, corrupt, unknown
        CacheMismatch                   a saved candidate cache that is not this model's
      NotFittedError (RuntimeError)     a model or index used before fit/build/load
      FeatureStoreError                 a feature-store operation that cannot be done
        UnknownFeatureError (KeyError)  a feature name that is not registered
        OnlineStoreUnavailable          the online store did not answer in time
      BrowserError (RuntimeError)       headless Chromium could not start or load a page
        BrowserNotFoundError
      AlertDeliveryError                alerts a webhook did not accept (down, 4xx, 5xx)
    RequestTooLarge                     control flow of the service's body-size limit (413)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


class MlsdError(Exception):
    """Base class of every error mlsd raises on purpose (user-facing, no traceback needed)."""

    exit_code: int = 2


class ConfigError(MlsdError, ValueError):
    """A configuration value or command-line option is invalid."""


class DataError(MlsdError, ValueError):
    """Input data cannot be used (unreadable file, unsupported format, no rows...)."""


@dataclass(frozen=True)
class Problem:
    """One data problem: where it is, what was found and what was expected.

    ``row`` is the 0-based index of the first offending row in the table as read (for CSV
    files ``line`` gives the 1-based line number in the file, the header being line 1; it
    assumes one record per line). Column- and file-level problems have ``row`` None (and, for
    a CSV column missing from the header, ``line`` 1). ``count`` is how many rows share the
    problem (0 for column-level problems). ``check`` names the rule broken ("dtype",
    "missing", "empty", "duplicate id"...), the key under which repairs are counted.
    """

    file: str
    column: str | None
    row: int | None
    found: str
    expected: str
    count: int = 0
    line: int | None = None
    check: str = ""

    def __str__(self) -> str:
        where = [self.file]
        if self.column is not None:
            where.append(f"column '{self.column}'")
        if self.row is not None:
            loc = f"row {self.row}"
            if self.line is not None:
                loc += f" (line {self.line})"
            where.append(loc)
        elif self.line == 1:
            where.append("header (line 1)")
        elif self.line is not None:
            where.append(f"line {self.line}")
        more = f" ({self.count:,} rows in all)" if self.count > 1 else ""
        return f"{', '.join(where)}: {self.found}; expected {self.expected}{more}"


class DataValidationError(DataError):
    """Raised when input data breaks its contract; carries every :class:`Problem` found.

    ``note`` (optional) is one more line for the user, e.g. why a repair was not possible.
    """

    def __init__(self, problems: list[Problem], note: str = "") -> None:
        self.problems = list(problems)
        self.note = note
        if len(self.problems) == 1:
            msg = str(self.problems[0])
        else:
            msg = f"{len(self.problems)} problems:\n" + "\n".join(f"  - {p}" for p in self.problems)
        if note:
            msg += f"\n({note})"
        super().__init__(msg)


class RequestTooLarge(Exception):
    """A request body streamed past the service's size limit: raised by the body-size
    middleware's ``receive`` and caught by that middleware, which answers 413. Deliberately
    not an :class:`MlsdError`: the app's handler of those (422) must not catch it on its way
    out of a route that was reading the body."""


class BrowserError(MlsdError, RuntimeError):
    """A headless browser could not be started, or could not load a page in time."""


class BrowserNotFoundError(BrowserError):
    """No Chromium binary (or no ``playwright`` package to drive it) could be found."""


class BundleError(DataError):
    """A model bundle is missing, malformed, corrupt or of an unknown kind."""


class CacheMismatch(DataError):
    """A saved candidate cache that is not for the model asked about (or is unreadable)."""


class NotFittedError(MlsdError, RuntimeError):
    """A source, model or index was used before ``fit``/``build`` (or ``load``)."""


class FeatureStoreError(MlsdError):
    """A feature-store operation cannot be done as asked (bad layout, wrong entity...)."""


class UnknownFeatureError(FeatureStoreError, KeyError):
    """A feature name is not registered; the message names the closest registered names."""

    def __init__(self, name: str, known: Iterable[str], where: str = "the feature registry"):
        self.name = name
        self.suggestions = difflib.get_close_matches(name, sorted(set(known)), n=3, cutoff=0.5)
        hint = (
            f"; did you mean {', '.join(repr(s) for s in self.suggestions)}?"
            if self.suggestions
            else ""
        )
        self.message = f"unknown feature {name!r}: not in {where}{hint}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return self.message


class OnlineStoreUnavailable(FeatureStoreError):
    """The online store did not answer within its timeout (down, unreachable, overloaded).

    Raised instead of hanging; serving catches it and degrades gracefully.
    """


class LogUnavailable(MlsdError):
    """The event log's storage failed (disk error, Redis down or too slow).

    Nothing of the call that raised it was acknowledged; the caller may retry it as a whole
    (records already stored are then reported as duplicates, not stored twice).
    """


class RegistryError(MlsdError):
    """The model registry cannot do what was asked: an unknown model, version or alias, no
    previous champion to roll back to, or a registry that cannot be reached."""


class AlertDeliveryError(MlsdError):
    """Alerts were not delivered: the webhook (an Alertmanager receiver, or anything that
    reads its format) refused them, or did not answer, after every try. The message names
    the URL and the last status or connection error."""
