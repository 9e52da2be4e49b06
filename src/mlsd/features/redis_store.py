"""The Redis-backed :class:`~mlsd.features.store.OnlineStore`.

One Redis string per (entity, key): the record as little-endian float32 bytes, under
``<namespace>:<entity>:<layout fingerprint>:<id>`` (``<user_id>:<creator_id>`` for pairs).
A read (``get_many``: several reads) is one round trip: one ``MGET`` of every key, parsed by
hiredis in C (without hiredis, a server-side script ``MGET``s and replies with the records
concatenated); records decode with one ``np.frombuffer`` per read, no per-field parsing.
Layouts are saved as JSON under ``<namespace>:layout:<entity>`` so that a serving process
can find them.

Every call has a socket timeout (default 100 ms) and no retries: with Redis down or stalled a
call raises :class:`~mlsd.errors.OnlineStoreUnavailable` within about the timeout,
and serving decides what to do (fall back, shed load) instead of hanging.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.utils import HIREDIS_AVAILABLE

from mlsd.errors import FeatureStoreError, OnlineStoreUnavailable
from mlsd.features.store import (
    EntityLayout,
    KeyArray,
    LayoutsMixin,
    Read,
    StoreStats,
    normalize_keys,
)

__all__ = ["RedisStore"]

_PUT_CHUNK = 5_000  # keys per MSET

# Without hiredis (redis-py's optional C parser, a dependency of mlsd): one round trip for
# any number of keys, and one reply of two strings instead of one reply element per key, since
# redis-py's pure-Python parser takes ~2 us per element, 1 ms for 500 videos. Returns a
# '1'/'0' presence flag per key and the present records
# concatenated in key order. (Chunked: Lua's unpack() takes a few thousand values at most.)
_MGET_PACKED = """
local flags, parts = {}, {}
for lo = 1, #KEYS, 4000 do
  local hi = math.min(lo + 3999, #KEYS)
  local vals = redis.call('MGET', unpack(KEYS, lo, hi))
  for i = 1, #vals do
    if vals[i] then
      flags[#flags + 1] = '1'
      parts[#parts + 1] = vals[i]
    else
      flags[#flags + 1] = '0'
    end
  end
end
return {table.concat(flags), table.concat(parts)}
"""


class RedisStore(LayoutsMixin):
    """Online store in Redis (redis-py, pipelined, binary records, timeouts set).

    ``url`` is ``redis://host:port/db``; ``timeout_s`` bounds every socket connect, read and
    write. ``namespace`` prefixes every key (several stores can share one Redis).
    ``ttl_s`` (optional) expires records that are not rewritten, for entities that go cold.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "mlsd",
        timeout_s: float = 0.1,
        ttl_s: int | None = None,
    ) -> None:
        u = urlparse(url)
        if u.scheme not in ("redis", "") or not u.hostname:
            raise FeatureStoreError(f"redis url {url!r}; expected redis://host:port/db")
        self.url = url
        self.host = u.hostname
        self.port = u.port or 6379
        self.timeout_s = timeout_s
        self.namespace = namespace
        self.ttl_s = ttl_s
        self.stats = StoreStats()
        # serving sets it: every read then also reads the population marker (same round
        # trip) and raises OnlineStoreUnavailable when it is gone (Redis came back empty)
        self.require_populated = False
        self._layouts: dict[str, EntityLayout] = {}
        self._prefix: dict[str, bytes] = {}
        db = int(u.path.strip("/") or 0)
        self._client: redis.Redis = redis.Redis(
            host=self.host,
            port=self.port,
            db=db,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._mget = self._client.register_script(_MGET_PACKED)

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, namespace={self.namespace!r})"

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
            raise OnlineStoreUnavailable(
                f"redis at {self.host}:{self.port} unavailable during {what}: "
                f"{type(e).__name__}: {e} (timeout {self.timeout_s * 1000:.0f} ms)"
            ) from e
        except redis.exceptions.RedisError as e:
            raise OnlineStoreUnavailable(
                f"redis at {self.host}:{self.port} failed during {what}: {type(e).__name__}: {e}"
            ) from e

    def ping(self) -> bool:
        """True if Redis answers; raises OnlineStoreUnavailable otherwise."""
        with self._guard("ping"):
            return bool(self._client.ping())

    # --- layouts ---------------------------------------------------------------------------

    def _layout_key(self, entity: str) -> str:
        return f"{self.namespace}:layout:{entity}"

    def define(self, layout: EntityLayout) -> None:
        with self._guard("define"):
            self._client.set(self._layout_key(layout.entity), layout.to_json())
        self._remember(layout)

    def _remember(self, layout: EntityLayout) -> None:
        self._layouts[layout.entity] = layout
        self._prefix[layout.entity] = (
            f"{self.namespace}:{layout.entity}:{layout.fingerprint}:".encode()
        )

    def _known_layout(self, entity: str) -> EntityLayout | None:
        lay = self._layouts.get(entity)
        if lay is None:
            with self._guard("layout"):
                raw = self._client.get(self._layout_key(entity))
            if raw is not None:
                lay = EntityLayout.from_json(raw)
                self._remember(lay)
        return lay

    # --- population marker ------------------------------------------------------------------

    def _populated_key(self) -> str:
        return f"{self.namespace}:populated"

    def _check_marker(self, present: bool) -> None:
        if not present:
            raise OnlineStoreUnavailable(
                f"redis at {self.host}:{self.port} holds no population marker "
                f"({self._populated_key()}): emptied or restarted, not yet repopulated"
            )

    def mark_populated(self, token: str) -> None:
        """Write ``<namespace>:populated`` = ``token`` (a model version), after every record:
        a Redis that lost its data (restarted without persistence, flushed) has no marker, so
        a reader can tell that the records must be written again."""
        with self._guard("mark_populated"):
            self._client.set(self._populated_key(), str(token).encode())

    def populated(self) -> str | None:
        """The token of the last :meth:`mark_populated` in this namespace, None when there is
        none (never populated, or the data was lost); OnlineStoreUnavailable when Redis is
        down."""
        with self._guard("populated"):
            raw = self._client.get(self._populated_key())
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    # --- records ---------------------------------------------------------------------------

    def _keys(self, entity: str, keys: np.ndarray) -> list[bytes]:
        p = self._prefix[entity]
        return [p + i for i in self._suffixes(entity, keys)]

    @staticmethod
    def _suffixes(entity: str, keys: np.ndarray) -> list[bytes]:
        if entity == "user_creator":
            return [b"%d:%d" % (u, c) for u, c in keys.tolist()]
        return [b"%d" % k for k in keys.tolist()]

    def _mget_plain(self, ids: list[tuple[bytes, list[bytes]]], n_keys: int) -> list[Any]:
        """``MGET`` of every ``prefix + suffix``, the RESP request written here (hiredis
        parses the reply in C).

        Why not ``execute_command``: redis-py checks and encodes each of the 500 arguments in
        Python before hiredis packs them, ~0.5 ms of a ~1.5 ms read of 500 keys; the keys are
        already bytes, so the request is a join (~0.1 ms). Errors from the connection
        disconnect it (the pool reconnects on the next call), as redis-py does."""
        parts = [b"*%d\r\n$4\r\nMGET\r\n" % (n_keys + 1)]
        for p, suffixes in ids:
            lp = len(p)
            parts.extend([b"$%d\r\n%b%b\r\n" % (lp + len(i), p, i) for i in suffixes])
        pool = self._client.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command([b"".join(parts)], check_health=False)
            vals = conn.read_response()
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)
        if isinstance(vals, redis.exceptions.ResponseError):
            raise vals
        return list(vals)

    def put(self, entity: str, keys: KeyArray, values: np.ndarray) -> None:
        lay = self.layout(entity)
        k = normalize_keys(entity, keys)
        v = self._check_values(lay, len(k), values).astype("<f4", copy=False)
        names = self._keys(entity, k)
        blobs = [row.tobytes() for row in v]
        with self._guard("put"):
            pipe = self._client.pipeline(transaction=False)
            for lo in range(0, len(names), _PUT_CHUNK):
                chunk = dict(zip(names[lo : lo + _PUT_CHUNK], blobs[lo : lo + _PUT_CHUNK],
                                 strict=True))  # fmt: skip
                pipe.mset(chunk)
                if self.ttl_s:
                    for name in chunk:
                        pipe.expire(name, self.ttl_s)
            pipe.execute()
        self.stats.writes += len(k)

    def _decode(
        self, lay: EntityLayout, cols: np.ndarray, present: np.ndarray, blob: bytes, n: int
    ) -> np.ndarray:
        k = int(present.sum())
        out = np.empty((n, len(cols)), dtype=np.float32)
        if k < n:
            out[:] = lay.defaults[cols]
        if k:
            rec = np.frombuffer(blob, dtype="<f4").reshape(k, lay.width)
            out[present] = rec[:, cols]
        self.stats.reads += 1
        self.stats.keys_read += n
        self.stats.unknown_keys += n - k
        return out

    def get(self, entity: str, keys: KeyArray, features: Sequence[str]) -> np.ndarray:
        return self.get_many([(entity, keys, features)])[0]

    def get_many(self, reads: Sequence[Read]) -> list[np.ndarray]:
        plan = []
        ids: list[tuple[bytes, list[bytes]]] = []
        n_keys = 0
        for entity, keys, features in reads:
            lay = self.layout(entity)
            cols = self._columns(lay, features)
            k = normalize_keys(entity, keys)
            plan.append((lay, cols, len(k)))
            ids.append((self._prefix[entity], self._suffixes(entity, k)))
            n_keys += len(k)
        flags, blob = np.zeros(0, bool), b""
        marker = self._populated_key().encode() if self.require_populated else None
        if n_keys:
            if marker is not None:  # one more key of the same round trip
                ids = [*ids, (marker, [b""])]
                n_keys += 1
            with self._guard("get"):
                if HIREDIS_AVAILABLE:
                    vals = self._mget_plain(ids, n_keys)
                    if marker is not None:
                        self._check_marker(vals.pop() is not None)
                    missing = vals.count(None)
                    if missing:
                        flags = np.fromiter((v is not None for v in vals), bool, len(vals))
                        blob = b"".join([v for v in vals if v is not None])
                    else:
                        flags = np.ones(len(vals), bool)
                        blob = b"".join(vals)
                else:
                    if marker is not None:  # without hiredis: a second round trip
                        ids = ids[:-1]
                        self._check_marker(bool(self._client.exists(marker)))
                    names = [p + i for p, suffixes in ids for i in suffixes]
                    present, blob = self._mget(keys=names, client=self._client)
                    flags = np.frombuffer(present, dtype=np.uint8) == ord("1")
        out = []
        start, offset = 0, 0
        for lay, cols, n in plan:
            mine = flags[start : start + n]
            size = int(mine.sum()) * lay.width * 4
            out.append(self._decode(lay, cols, mine, blob[offset : offset + size], n))
            start += n
            offset += size
        if offset != len(blob):
            raise FeatureStoreError(f"redis returned {len(blob)} bytes of records; the layouts "
                                    f"expect {offset}")  # fmt: skip
        return out

    def clear(self) -> int:
        """Delete every key of this namespace; returns how many (for tests and re-builds)."""
        n = 0
        with self._guard("clear"):
            for batch in _batched(self._client.scan_iter(f"{self.namespace}:*", count=1000)):
                n += int(self._client.delete(*batch))
        self._layouts.clear()
        self._prefix.clear()
        return n

    def close(self) -> None:
        self._client.close()


def _batched(it: Any, size: int = 1000) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for x in it:
        batch.append(x)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
