"""Each request's arrival time, stamped by the HTTP protocol when its first bytes are parsed.

Why: the model sheds a request to its cheap fallback when it waited longer than the queue
budget (``PipelineConfig.queue_budget_ms``), so the wait must be measured from the request's
arrival. With model calls on the event loop (``mlsd serve --threads 0``) a handler starts only
after the requests parsed before it have run, so a time taken in the handler misses exactly the
wait that overload builds up. uvicorn's httptools protocol, subclassed here, stamps the time in
the request's ``scope["state"]`` as the loop parses it; what is still missed is how long the
loop was busy when the bytes arrived (at most the one model call in progress).

The protocol also bounds how long and how large a request's head may be (see :mod:`.limits`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from mlsd.serving.limits import LimitedHttpTools

ARRIVED = "mlsd.arrived"


class ArrivalStampedHttpTools(LimitedHttpTools):
    """uvicorn's httptools protocol, with the limits of :class:`~.limits.LimitedHttpTools`,
    stamping ``scope["state"][ARRIVED]`` (perf_counter s)."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["state"][ARRIVED] = time.perf_counter()


def arrival(scope: Mapping[str, Any]) -> float:
    """When the request arrived (``time.perf_counter()`` seconds): the protocol's stamp, else
    (another server, a test client) now."""
    state = scope.get("state")
    t = state.get(ARRIVED) if isinstance(state, dict) else None
    return float(t) if t is not None else time.perf_counter()
