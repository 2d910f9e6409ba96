"""JSON error responses: every non-2xx answer is {"error": {"type", "message", "limit"?, "max"?, "errors"?}}."""

from __future__ import annotations

import orjson
from starlette.responses import Response


class APIError(Exception):
    """An error answer. Raised by handlers and dependencies, rendered by the app's exception handler;
    middleware (the load shedder) sends ``response()`` itself."""

    def __init__(self, status: int, type: str, message: str, *, limit: str | None = None, max: float | None = None,
                 errors: list | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.type, self.message = status, type, message
        self.limit, self.max, self.errors, self.headers = limit, max, errors, headers

    def response(self) -> Response:
        return error_response(self.status, self.type, self.message, limit=self.limit, max=self.max,
                              errors=self.errors, headers=self.headers)


def error_response(status: int, type: str, message: str, *, limit: str | None = None, max: float | None = None,
                   errors: list | None = None, headers: dict | None = None) -> Response:
    body: dict = {"type": type, "message": message}
    if limit is not None:
        body["limit"] = limit
        body["max"] = max
    if errors is not None:
        body["errors"] = errors
    return Response(orjson.dumps({"error": body}), status_code=status, headers=headers, media_type="application/json")
