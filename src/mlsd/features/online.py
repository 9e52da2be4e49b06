"""Online feature stores: :func:`open_store` picks one from a URL.

The contract is :mod:`mlsd.features.store`; the implementations are
:class:`~mlsd.features.memory_store.MemoryStore` (embedded default, no server) and
:class:`~mlsd.features.redis_store.RedisStore` (production). This module is the only one that
knows both.
"""

from __future__ import annotations

from mlsd.errors import FeatureStoreError
from mlsd.features.memory_store import MemoryStore
from mlsd.features.store import OnlineStore

__all__ = ["MEMORY", "open_store"]

#: The URL of the embedded store (``None`` and ``""`` mean the same).
MEMORY = "memory"


def open_store(
    url: str | None = None, *, namespace: str = "mlsd", timeout_s: float = 0.1
) -> OnlineStore:
    """The store at ``url``: ``None``, ``""`` or ``"memory"`` a new :class:`MemoryStore`;
    ``redis://host:port/db`` a :class:`~mlsd.features.redis_store.RedisStore` with key prefix
    ``namespace`` and ``timeout_s`` on every call (it connects on first use, not here).
    Raises FeatureStoreError on another scheme, naming the URL and what was expected."""
    if url is None or url in ("", MEMORY):
        return MemoryStore()
    if url.startswith("redis://"):
        # imported here: redis-py is needed only by processes that talk to Redis
        from mlsd.features.redis_store import RedisStore

        return RedisStore(url, namespace=namespace, timeout_s=timeout_s)
    raise FeatureStoreError(
        f"online store {url!r}; expected 'memory' or a Redis URL redis://host:port/db"
    )
