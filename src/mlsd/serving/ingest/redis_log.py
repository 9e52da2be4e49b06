"""The Redis Streams backend of the event log: several service instances share one stream.

An append is ONE server-side script call (EVALSHA): for each record in order,
``SET <stream>:eid:<event_id> 1 NX EX <dedup_ttl_s>`` and, only when that SET succeeded,
``XADD <stream> * r <json>``. A script runs atomically, so two processes appending the same id
at once store it once. With the server in ``appendonly yes`` + ``appendfsync always``, Redis
writes and fsyncs its AOF before it replies to any client, so an acknowledged record survives
a crash of the server, and no reader is answered with a record that is not yet durable. Other
settings are allowed (managed Redis may not let us check or change them) but logged as a
warning at open: acknowledged events may then be lost on a Redis crash.

Positions are stream entry ids (``"<ms>-<seq>"``; ``"0-0"`` is the start). A retry of an
event whose dedup key has expired (older than ``dedup_ttl_s``) or was evicted (a
``maxmemory`` policy other than ``noeviction``) may be stored twice. The dedup keys are
computed inside the script, which Redis Cluster would refuse: use a standalone server (or a
primary with replicas).

Every call has a socket timeout and no retries: with Redis down or stalled a call raises
:class:`LogUnavailable` within about ``timeout_s``. A call that timed out may still have been
applied; a retry of it is then reported as duplicates, not stored twice.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from mlsd.errors import DataError
from mlsd.serving.ingest.log import (
    AppendResult,
    LogUnavailable,
    Position,
    ReadResult,
    Record,
    check_batches,
)

__all__ = ["RedisStreamLog"]

log = logging.getLogger(__name__)

_ENTRY_ID = re.compile(r"\d+-\d+")

# KEYS[1]: the stream. ARGV[1]: dedup ttl (s); ARGV[2]: the dedup key prefix; then per batch
# its record count n followed by n (event_id, json) pairs. Returns per batch
# {stored, duplicates, end}: end is the id of the last entry added so far in this call, or the
# stream's last entry before it ("0-0" for an empty stream).
_APPEND = """
local stream, ttl, prefix = KEYS[1], ARGV[1], ARGV[2]
local out, last, i = {}, nil, 3
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  i = i + 1
  local stored = 0
  for _ = 1, n do
    if redis.call('SET', prefix .. ARGV[i], '1', 'NX', 'EX', ttl) then
      last = redis.call('XADD', stream, '*', 'r', ARGV[i + 1])
      stored = stored + 1
    end
    i = i + 2
  end
  if not last then
    local tail = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
    last = tail[1] and tail[1][1] or '0-0'
  end
  out[#out + 1] = stored
  out[#out + 1] = n - stored
  out[#out + 1] = last
end
return out
"""


def _split_url(url: str) -> tuple[str, str | None]:
    """``redis://host:port/db?stream=name`` -> (the url without ``stream``, the name)."""
    u = urlparse(url)
    query = parse_qsl(u.query, keep_blank_values=True)
    stream = next((v for k, v in query if k == "stream"), None)
    rest = urlencode([(k, v) for k, v in query if k != "stream"])
    return urlunparse(u._replace(query=rest)), stream


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class RedisStreamLog:
    """The :class:`~mlsd.serving.ingest.log.EventLogBackend` on a Redis stream.

    ``url``: ``redis://[user:password@]host:port/db`` (``rediss://`` and ``unix://`` too; a
    ``stream=name`` query parameter overrides ``stream``). ``dedup_ttl_s``: how long an event id
    is remembered (seconds); ``timeout_s``: bounds every socket connect, read and write.
    Raises :class:`LogUnavailable` if Redis cannot be reached at open,
    :class:`~mlsd.errors.DataError` for a malformed url.
    """

    def __init__(
        self,
        url: str,
        *,
        stream: str = "mlsd:events",
        dedup_ttl_s: int = 7 * 86400,
        timeout_s: float = 1.0,
    ) -> None:
        base, from_url = _split_url(url)
        self.stream = from_url or stream
        if dedup_ttl_s < 1:
            raise DataError(f"dedup_ttl_s {dedup_ttl_s}; expected >= 1 (seconds)")
        self.dedup_ttl_s = int(dedup_ttl_s)
        self.timeout_s = timeout_s
        try:
            self._client: redis.Redis = redis.Redis.from_url(
                base,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
        except ValueError as e:
            raise DataError(f"redis url {url!r}: {e}; expected redis://host:port/db") from e
        kw = self._client.get_connection_kwargs()
        where = kw.get("path") or f"{kw.get('host')}:{kw.get('port')}"
        self.description = f"redis stream {self.stream} on {where}/{kw.get('db', 0)}"
        self._key = self.stream.encode()
        self._eid_prefix = f"{self.stream}:eid:".encode()
        self._append = self._client.register_script(_APPEND)
        try:
            self._check_persistence()
        except LogUnavailable:
            self._client.close()
            raise

    def __repr__(self) -> str:
        return f"RedisStreamLog({self.description!r})"

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
            raise LogUnavailable(
                f"{self.description} unavailable during {what}: {type(e).__name__}: {e} "
                f"(timeout {self.timeout_s * 1000:.0f} ms)"
            ) from e
        except redis.exceptions.RedisError as e:  # MISCONF (AOF write failed), OOM, READONLY
            raise LogUnavailable(
                f"{self.description} failed during {what}: {type(e).__name__}: {e}"
            ) from e

    def _check_persistence(self) -> None:
        """Warn unless the server fsyncs its AOF before each reply (the only setting under
        which an acknowledged event survives a Redis crash)."""
        try:
            with self._guard("open"):
                cfg = {_str(k): _str(v) for k, v in self._client.config_get("append*").items()}
        except LogUnavailable as e:
            if isinstance(e.__cause__, redis.exceptions.ResponseError):  # CONFIG disabled
                log.warning(
                    "%s: cannot check its persistence settings (%s); acknowledged events "
                    "are durable only with appendonly yes and appendfsync always",
                    self.description,
                    e.__cause__,
                )
                return
            raise
        if cfg.get("appendonly") != "yes" or cfg.get("appendfsync") != "always":
            log.warning(
                "%s: appendonly %s, appendfsync %s: acknowledged events may be lost on a Redis "
                "crash (durable only with appendonly yes and appendfsync always)",
                self.description,
                cfg.get("appendonly"),
                cfg.get("appendfsync"),
            )

    def append(self, batches: Sequence[Sequence[Record]]) -> list[AppendResult]:
        """See :meth:`EventLogBackend.append`: one script call for all ``batches``.

        Raises :class:`~mlsd.errors.DataError` (nothing sent) for a record without a non-empty
        str ``event_id`` or that orjson cannot serialise.
        """
        check_batches(batches)
        args: list[Any] = [self.dedup_ttl_s, self._eid_prefix]
        try:
            for batch in batches:
                args.append(len(batch))
                for r in batch:
                    args += (r["event_id"], orjson.dumps(r))
        except TypeError as e:  # orjson.JSONEncodeError
            raise DataError(f"{self.description}: a record is not JSON-serialisable: {e}") from e
        with self._guard("append"):
            out = self._append(keys=[self._key], args=args)
        return [
            AppendResult(int(out[i]), int(out[i + 1]), _str(out[i + 2]))
            for i in range(0, len(out), 3)
        ]

    def read(self, after: Position | None, limit: int) -> ReadResult:
        """See :meth:`EventLogBackend.read` (``XRANGE stream (after + COUNT limit``).

        ``after``: an entry id returned by this log (a malformed one raises
        :class:`~mlsd.errors.DataError`); ``limit`` < 1 reads nothing.
        """
        if after is not None and not (isinstance(after, str) and _ENTRY_ID.fullmatch(after)):
            raise DataError(f"redis stream position {after!r}; expected an entry id 'ms-seq'")
        if limit < 1:
            return ReadResult([], after or "0-0", 0)
        with self._guard("read"):
            entries = self._client.xrange(
                self._key, min="-" if after is None else f"({after}", max="+", count=limit
            )
        records: list[Record] = []
        corrupt = 0
        entries = entries or []
        for entry_id, fields in entries:
            raw = fields.get(b"r") if fields else None
            try:
                rec = orjson.loads(raw) if raw is not None else None
            except orjson.JSONDecodeError:
                rec = None
            if isinstance(rec, dict):
                records.append(rec)
            else:
                corrupt += 1
                log.warning(
                    "%s: corrupt entry %s skipped (fields %r)",
                    self.description,
                    _str(entry_id),
                    list(fields or ())[:4],
                )
        nxt = _str(entries[-1][0]) if entries else (after or "0-0")
        return ReadResult(records, nxt, corrupt)

    def end(self) -> Position:
        """The id of the stream's last entry now (``"0-0"`` when it is empty)."""
        with self._guard("end"):
            tail = self._client.xrevrange(self._key, max="+", min="-", count=1)
        return _str(tail[0][0]) if tail else "0-0"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RedisStreamLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
