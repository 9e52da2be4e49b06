"""User segments for breaking metrics down: new, light and heavy users.

A user's segment is set by their number of *training* interactions (positives before the cut):

- ``new``: 0, the cold-start case (only a fallback such as popularity can serve them);
- ``light``: 1 to ``light_max`` (default 19);
- ``heavy``: more than ``light_max`` (default: 20 or more).

The default boundary of 20 is the minimum activity of a MovieLens user (GroupLens kept only users
with at least 20 ratings), a common line between "established" and "sparse" users; on the
simulated platform it falls near the median user. Pass another ``light_max`` to move it.
"""

from __future__ import annotations

import numpy as np

from mlsd.errors import ConfigError, DataError

__all__ = ["DEFAULT_LIGHT_MAX", "SEGMENTS", "segment_users"]

SEGMENTS: tuple[str, ...] = ("new", "light", "heavy")
DEFAULT_LIGHT_MAX = 19


def segment_users(train_counts: np.ndarray, light_max: int = DEFAULT_LIGHT_MAX) -> np.ndarray:
    """Segment name per user (``str[n]``) from their training interaction counts (``int[n]``)."""
    if light_max < 1:
        raise ConfigError(f"light_max={light_max}: expected >= 1 (light users have 1..light_max)")
    c = np.asarray(train_counts)
    if c.size and (not np.issubdtype(c.dtype, np.integer) or c.min() < 0):
        raise DataError("train_counts: expected non-negative integers (interactions per user)")
    return np.where(c == 0, "new", np.where(c <= light_max, "light", "heavy"))
