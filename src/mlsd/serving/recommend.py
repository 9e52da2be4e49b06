"""One recommendation request, already validated, to its response body: the logic that the
``POST /v1/recommendations`` route and the fast path (:mod:`.fast_path`) share, so that both
answer alike."""

from __future__ import annotations

from mlsd.pipeline import RequestCtx
from mlsd.serving.encoding import epoch_ms, response_json
from mlsd.serving.ids import id_maps, names, resolve
from mlsd.serving.state import ServiceState

_USER = ("body", "user_id")


async def recommend(
    state: ServiceState,
    user_id: int | str,
    k: int,
    device: str | None,
    surface: str | None,
    explain: bool,
    *,
    time_ms: int | None,
    received: float,
) -> bytes:
    """The response body of one request (a ``RecommendationResponse``), its metrics recorded.

    ``time_ms``: the request time (Unix ms; None: now); ``received``: when the request arrived
    (``time.perf_counter()`` s), from which the model's time budget counts. ``user_id`` is
    resolved against the model's ids (:mod:`.ids`; :class:`~.ids.IdRefused`, a 422, for one it
    cannot take). Raises what the model raises for a request it refuses
    (:class:`~mlsd.errors.MlsdError`: a 422).
    """
    m = state.holder.get()  # in-flight requests keep this model even if a reload swaps it
    maps = id_maps(m)
    code, shown = resolve(maps, "user_id", user_id, _USER)
    ctx = RequestCtx(
        time_ms=epoch_ms(None) if time_ms is None else time_ms,
        device=device,
        surface=surface,
        received_at=received,
    )
    served = await state.calls(m.serve, code, k, ctx, explain=explain)
    state.metrics.observe(served)
    return response_json(shown, served, m.version, explain, names(maps, "video_id"))
