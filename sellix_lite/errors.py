"""The errors every layer raises, and the one function that builds an RFC 9457 body.

Services raise these; the HTTP layer renders them as `application/problem+json` under /v1
(and as a message in HTML pages). Each class carries the status and the slug clients branch
on (docs/api.md, Errors).
"""

from __future__ import annotations


class ApiError(Exception):
    """An error with an HTTP status, a `type` slug and an optional per-field `errors` map.

    `codes` says, per field, why it failed in a word a program can branch on
    (`{"qty": "sold_out"}`), so callers never parse the wording of `errors`. Codes stay out
    of the response body.
    """

    status = 500
    type = "server_error"
    title = "Internal server error"

    def __init__(self, detail: str | None = None, *, errors: dict | None = None,
                 codes: dict | None = None, headers: dict | None = None, **extra):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.codes = codes or {}
        self.headers = headers or {}
        self.extra = extra


class InvalidRequest(ApiError):
    status, type, title = 400, "invalid_request", "Invalid request"


class Unauthenticated(ApiError):
    status, type, title = 401, "unauthenticated", "Authentication required"

    def __init__(self, detail: str | None = None, **kwargs):
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="sellix-lite"'},
                         **kwargs)


class ForbiddenScope(ApiError):
    status, type, title = 403, "forbidden_scope", "Missing ability"


class NotFound(ApiError):
    status, type, title = 404, "not_found", "Not found"


class MethodNotAllowed(ApiError):
    status, type, title = 405, "method_not_allowed", "Method not allowed"


class Conflict(ApiError):
    status, type, title = 409, "conflict", "Conflict"


class PayloadTooLarge(ApiError):
    status, type, title = 413, "payload_too_large", "Payload too large"


class UnsupportedMediaType(ApiError):
    status, type, title = 415, "unsupported_media_type", "Unsupported media type"


class Unprocessable(ApiError):
    status, type, title = 422, "unprocessable", "Validation failed"

    def __init__(self, detail: str | None = None, *, errors: dict | None = None, **kwargs):
        if detail is None and errors:
            count = len(errors)
            detail = f"{count} field{'s are' if count > 1 else ' is'} invalid"
        super().__init__(detail, errors=errors, **kwargs)


class RateLimited(ApiError):
    status, type, title = 429, "rate_limited", "Too many requests"


class ServerError(ApiError):
    status, type, title = 500, "server_error", "Internal server error"


def invalid(field: str, message: str) -> Unprocessable:
    """A 422 for one field."""
    return Unprocessable(errors={field: message})


def problem(error: ApiError, *, instance: str, request_id: str) -> dict:
    """The RFC 9457 body for `error`; the only place such a body is built."""
    body = {
        "type": error.type,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "instance": instance,
    }
    if error.errors:
        body["errors"] = error.errors
    body.update(error.extra)
    body["request_id"] = request_id
    return body
