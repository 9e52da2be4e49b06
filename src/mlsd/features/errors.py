"""Errors of the feature store, all under :class:`mlsd.errors.MlsdError`.

Serving catches :class:`OnlineStoreUnavailable` to fall back (e.g. to default features or a
popularity slate); the others are programming or configuration errors that should surface.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from mlsd.errors import MlsdError


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
