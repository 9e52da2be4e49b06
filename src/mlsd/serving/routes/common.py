"""What the routers share: the write endpoints' API-key check and the documented error
responses (OpenAPI)."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import Depends, HTTPException
from fastapi.security import APIKeyHeader

from mlsd.serving.schemas import ErrorResponse
from mlsd.serving.state import Service

API_KEY_HEADER = "X-API-Key"

INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "Invalid request: names the field."}
}
BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body cannot be decoded."},
    413: {"model": ErrorResponse, "description": "Request body over the size limit."},
    **INVALID,
}
AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": f"No `{API_KEY_HEADER}` header."},
    403: {"model": ErrorResponse, "description": f"Wrong `{API_KEY_HEADER}` (or none configured)."},
}

_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="Key of the write endpoints (`mlsd serve --api-key`, or MLSD_API_KEY).",
)


def require_key(x_api_key: Annotated[str | None, Depends(_api_key_header)], state: Service) -> None:
    """FastAPI dependency of the write endpoints: 401 without the header, 403 with a wrong key
    or when the service has none configured (compared in constant time)."""
    if x_api_key is None:
        raise HTTPException(401, f"missing {API_KEY_HEADER} header")
    key = state.api_key
    if key is None or not secrets.compare_digest(x_api_key.encode(), key.encode()):
        raise HTTPException(403, f"invalid {API_KEY_HEADER}")
