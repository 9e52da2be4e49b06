"""Deterministic assignment of users to arms: the service's own (:mod:`mlsd.serving.assignment`),
so that the analysis and the service always agree on a user's arm."""

from __future__ import annotations

from mlsd.serving.assignment import assign, bucket

__all__ = ["assign", "bucket"]
