"""The closed loop's client of a running ``mlsd serve``: each request is a
``POST /v1/recommendations`` (the request's simulated time in ``context.time``), each day's
events a series of ``POST /v1/events`` batches, as a real platform's front end would send them.

Requests go ``concurrency`` at a time on keep-alive connections. A write the service sheds
(429/503) is retried after its ``Retry-After``; every event carries a deterministic
``event_id``, so a retried batch is stored once. Any other non-2xx answer stops the loop with
an :class:`~mlsd.errors.MlsdError` naming the endpoint, status and body.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlsd.errors import MlsdError

__all__ = ["HttpClient", "HttpLoopError"]

EVENT_BATCH = 1000  # ~200 KB a batch: under the service's 1 MiB body limit
_FIELDS = ("watch_seconds", "request_id", "position", "surface", "device", "rating")


class HttpLoopError(MlsdError):
    """The service answered the loop with an error it cannot retry."""


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


class HttpClient:
    """A :class:`~mlsd.experiments.loop.LoopClient` of the service at ``url`` (``api_key`` for
    ``/v1/events``). ``arms``: the experiment's arm names (the index each response's
    ``experiment.arm`` maps to); ``None``: one arm, ``all``. ``retries``: tries of a shed write
    before giving up."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        arms: tuple[str, ...] | None = None,
        *,
        concurrency: int = 8,
        timeout_s: float = 30.0,
        retries: int = 30,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.arms = tuple(arms or ("all",))
        self._index = {a: i for i, a in enumerate(self.arms)}
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.retries = retries
        self.requests = 0
        self.events_sent = 0
        self.shed = 0
        self.seconds_requests = 0.0
        self.seconds_events = 0.0
        self._batch = 0
        self._run = uuid.uuid4().hex[:12]  # event ids unique across runs on one log

    # ---------------------------------------------------------------- requests --
    def slates(
        self, users: np.ndarray, t: np.ndarray, surface: np.ndarray, device: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        out = asyncio.run(self._slates(users, t, surface, device, k))
        self.seconds_requests += time.perf_counter() - t0
        self.requests += len(users)
        return out

    async def _slates(
        self, users: np.ndarray, t: np.ndarray, surface: np.ndarray, device: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        videos = np.full((len(users), k), -1, dtype=np.int64)
        arm = np.zeros(len(users), dtype=np.int8)
        explore = np.zeros((len(users), k), dtype=bool)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(users)):
            queue.put_nowait(i)
        limits = httpx.Limits(max_connections=self.concurrency)
        async with httpx.AsyncClient(timeout=self.timeout_s, limits=limits) as http:

            async def worker() -> None:
                while not queue.empty():
                    i = queue.get_nowait()
                    body = {
                        "user_id": int(users[i]),
                        "k": k,
                        "context": {
                            "time": _iso(int(t[i])),
                            "surface": str(surface[i]),
                            "device": str(device[i]),
                        },
                    }
                    r = await http.post(f"{self.url}/v1/recommendations", json=body)
                    if r.status_code != 200:
                        raise HttpLoopError(
                            f"POST /v1/recommendations (user {users[i]}): {r.status_code} "
                            f"{r.text[:300]}"
                        )
                    d = r.json()
                    items = d["items"][:k]
                    videos[i, : len(items)] = [int(it["video_id"]) for it in items]
                    explore[i, : len(items)] = [bool(it["exploration"]) for it in items]
                    exp = d.get("experiment")
                    arm[i] = self._index.get(exp["arm"], 0) if exp else 0

            await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        return videos, arm, explore

    # ------------------------------------------------------------------ events --
    def send(self, events: pa.Table) -> None:
        """Post the day's events, then wait until every worker has applied them (the
        service's ``mlsd_event_apply_lag_events`` at 0 twice in a row), so that the next
        day is served from the state the in-process loop would have."""
        t0 = time.perf_counter()
        asyncio.run(self._send(events))
        self._wait_applied()
        self.seconds_events += time.perf_counter() - t0
        self.events_sent += events.num_rows

    def _wait_applied(self, timeout_s: float = 120.0) -> None:
        deadline, zeros = time.monotonic() + timeout_s, 0
        with httpx.Client(timeout=self.timeout_s) as http:
            while time.monotonic() < deadline:
                text = http.get(f"{self.url}/metrics").text
                lags = [
                    float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("mlsd_event_apply_lag_events")
                ]
                zeros = zeros + 1 if lags and max(lags) == 0 else 0
                if zeros >= 2:
                    return
                time.sleep(0.2)
        raise HttpLoopError(
            f"the service at {self.url} did not apply the events within "
            f"{timeout_s:.0f} s (mlsd_event_apply_lag_events above 0)"
        )

    def _records(self, events: pa.Table) -> list[dict[str, Any]]:
        ts = pc.cast(events.column("timestamp"), pa.int64()).to_pylist()
        cols = {c: events.column(c).to_pylist() for c in _FIELDS if c in events.column_names}
        users = events.column("user_id").to_pylist()
        videos = events.column("video_id").to_pylist()
        types = events.column("event_type").to_pylist()
        out = []
        for i in range(events.num_rows):
            r: dict[str, Any] = {
                "user_id": users[i],
                "video_id": videos[i],
                "event_type": types[i],
                "timestamp": _iso(ts[i]),
            }
            for c, values in cols.items():
                if values[i] is not None:
                    v = values[i]
                    r[c] = int(v) if c in ("request_id", "position") else v
            out.append(r)
        return out

    async def _send(self, events: pa.Table) -> None:
        records = self._records(events)
        headers = {"X-API-Key": self.api_key} if self.api_key else {}
        async with httpx.AsyncClient(timeout=self.timeout_s, headers=headers) as http:
            for start in range(0, len(records), EVENT_BATCH):
                self._batch += 1
                batch = records[start : start + EVENT_BATCH]
                key = f"loop-{self._run}-{self._batch}"
                for j, r in enumerate(batch):
                    r["event_id"] = f"{key}-{j}"
                await self._post(http, {"events": batch})

    async def _post(self, http: httpx.AsyncClient, body: dict[str, Any]) -> None:
        for _ in range(self.retries):
            try:
                r = await http.post(f"{self.url}/v1/events", json=body)
            except httpx.TransportError:
                await asyncio.sleep(1.0)
                continue
            if r.status_code == 200:
                return
            if r.status_code in (429, 503):
                self.shed += 1
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                continue
            raise HttpLoopError(f"POST /v1/events: {r.status_code} {r.text[:300]}")
        raise HttpLoopError(f"POST /v1/events: still refused after {self.retries} tries")
