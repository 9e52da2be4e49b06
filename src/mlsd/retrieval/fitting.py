"""The one :meth:`~mlsd.retrieval.protocols.CandidateSource.fit` the sources share: its
arguments normalised once (:class:`FitData`), each source learning in its own ``_fit``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import pyarrow as pa

from mlsd.config import LabelConfig
from mlsd.data.dataset import Dataset
from mlsd.retrieval._data import Catalog, Positives, fit_inputs
from mlsd.retrieval.history import History

__all__ = ["FitData", "SourceBase"]


@dataclass(frozen=True)
class FitData:
    """A source's training inputs: ``positives`` up to ``now_ms`` (ms; given, or the last
    positive's time, 0 without any), the video ``catalog``, the ``users`` table (None when not
    given) and the ``history`` requests will read (given, or built from the positives)."""

    positives: Positives
    catalog: Catalog
    users: pa.Table | None
    now_ms: int
    history: History


class SourceBase:
    """Base of the candidate sources: ``fit`` (the protocol's signature, written once) checks
    the hyperparameters (``_check_params``, before any data is read), normalises the data
    (:func:`~mlsd.retrieval._data.fit_inputs`) and hands a :class:`FitData` to ``_fit``.
    ``options`` are the source's own keyword arguments of ``_fit``."""

    name: str
    exclude_seen: bool
    history_: History
    #: per-user cap of the history built when ``fit`` is given none (None: keep everything)
    default_history_len: ClassVar[int | None] = 200

    def fit(
        self,
        data: Dataset | pa.Table,
        *,
        videos: pa.Table | None = None,
        users: pa.Table | None = None,
        now_ms: int | None = None,
        history: History | None = None,
        label_cfg: LabelConfig | None = None,
        **options: Any,
    ) -> Self:
        """Learn from the positives of ``data`` (a Dataset, or a positives table with
        ``videos`` as the catalog) up to ``now_ms``; ``history`` (default: built from the
        positives) is what requests read: share one History between the sources of a
        pipeline. Raises ConfigError for bad hyperparameters, DataError for unusable data."""
        self._check_params()
        pos, catalog, users_t = fit_inputs(data, videos, users, label_cfg, now_ms)
        now = int(pos.times_ms.max()) if now_ms is None and len(pos) else int(now_ms or 0)
        if history is None:
            history = History.from_positives(
                pos.to_table(), max_len=self.default_history_len, known_video_ids=catalog.video_ids
            )
        self._fit(FitData(pos, catalog, users_t, now, history), **options)
        return self

    def _check_params(self) -> None:
        """Raise :class:`~mlsd.errors.ConfigError` for bad hyperparameters."""

    def _fit(self, d: FitData, **options: Any) -> None:
        """Learn from ``d``; a subclass's own ``options`` are passed through from ``fit``."""
        raise NotImplementedError

    def _seen(self, users: np.ndarray) -> np.ndarray | None:
        """``int64[n, s]``: each user's watched videos (PAD-padded) when ``exclude_seen``."""
        return self.history_.recent(users)[0] if self.exclude_seen else None
