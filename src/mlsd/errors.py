"""One exception hierarchy for mlsd.

Every error a user can cause derives from :class:`MlsdError`. Messages name what was given,
what was expected and where (file, column, row). The CLI turns any ``MlsdError`` into a one-line
message and exit status 2; the HTTP service (later) maps them to status codes at its edge.
"""

from __future__ import annotations

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


class BrowserError(MlsdError, RuntimeError):
    """A headless browser could not be started, or could not load a page in time."""


class BrowserNotFoundError(BrowserError):
    """No Chromium binary (or no ``playwright`` package to drive it) could be found."""
