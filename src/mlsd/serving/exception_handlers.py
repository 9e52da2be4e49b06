"""Errors mapped to HTTP answers, at the edge only: every error body is ``{"error": ...}``
(with a ``detail`` where there is one), and none carries a traceback.

- invalid request (pydantic): 422 with each problem's location, message and type;
- Starlette's HTTP errors (ours, and its own 404 route, 405 method, 400 undecodable body):
  their status, so that they get the same body as ours;
- :class:`~mlsd.errors.MlsdError` (a request the model refuses): 422;
- anything else: 500 naming only the exception's type.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlsd.errors import MlsdError

log = logging.getLogger("mlsd.serving")


async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"error": "invalid request", "detail": detail})


async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(
        status_code=exc.status_code, content={"error": str(exc.detail)}, headers=exc.headers
    )


async def user_error(_: Request, exc: MlsdError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"error": str(exc)})


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    # no traceback in the body: it leaks internals and helps nobody calling the API; the
    # server's log gets it
    log.error(
        "%s %s failed",
        request.method,
        request.url.path,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return JSONResponse(
        status_code=500, content={"error": "internal error", "detail": type(exc).__name__}
    )


EXCEPTION_HANDLERS: dict[
    int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]
] = {
    RequestValidationError: invalid,
    StarletteHTTPException: http_error,
    MlsdError: user_error,
    Exception: unexpected,
}
