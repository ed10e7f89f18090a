"""HTTP plumbing shared by every area: request ids, JSON responses and the one error handler.

Under /v1 and /ipn every error, including unknown paths, wrong methods, oversized bodies and
crashes, is rendered as RFC 9457 problem JSON; elsewhere as a small HTML page.
"""

from __future__ import annotations

import json
import logging
import re

from flask import Flask, Response, current_app, g, render_template, request
from werkzeug.exceptions import HTTPException

from .. import errors
from ..errors import ApiError
from ..ids import new_id
from .bodylimits import body_limit
from .surfaces import is_machine_facing, shop_mode

log = logging.getLogger("sellix_lite")
# Every JSON body of the API: compact, and UTF-8 as is rather than \u escapes.
_json_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

# A sign of a lone surrogate in a JSON body: escaped (`\ud800`), or as the bytes of one,
# which Python's JSON decoder lets through too.
_SURROGATE_HINT = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")

# Werkzeug's own HTTP errors, mapped onto the contract's slugs.
_HTTP_ERRORS = {
    400: errors.InvalidRequest,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
}


def request_id() -> str:
    """This request's id (`req_` + ULID), made on first use."""
    context = g._get_current_object()  # one lookup of the proxy, not three
    if "request_id" not in context:
        context.request_id = new_id("req")
    return context.request_id


def compact_json(value) -> str:
    """`value` encoded as the API's bodies are, keys in the order the object was built."""
    return _json_encoder.encode(value)


def refuse_lone_surrogates(raw: bytes, value) -> None:
    """InvalidRequest if `value`, parsed from `raw`, holds a lone surrogate: such a string
    is no text and can't be stored or sent. Surrogate pairs are one character, and pass."""
    if not _SURROGATE_HINT.search(raw):
        return
    try:
        compact_json(value).encode()
    except UnicodeEncodeError:
        raise errors.InvalidRequest("the body is not valid Unicode: it holds a lone "
                                    "surrogate (such as \\ud800)") from None


def json_response(payload, status: int = 200, headers: dict | None = None) -> Response:
    """A JSON response, keys in the order the object was built."""
    return Response(compact_json(payload), status=status, headers=headers,
                    mimetype="application/json")


def problem_response(error: ApiError) -> Response:
    """The problem+json response for `error`."""
    body = errors.problem(error, instance=request.path, request_id=request_id())
    response = Response(compact_json(body), status=error.status,
                        mimetype="application/problem+json")
    response.headers.update(error.headers)
    return response


def render_error(error: ApiError) -> Response:
    """Problem JSON for API paths, an HTML page elsewhere."""
    if is_machine_facing(request.path):
        return problem_response(error)
    html = render_template("error.html", error=error, mode=shop_mode(request.path))
    response = Response(html, status=error.status, mimetype="text/html")
    response.headers.update(error.headers)
    return response


def _handle_api_error(error: ApiError):
    return render_error(error)


def _handle_http_exception(exc: HTTPException):
    error_class = _HTTP_ERRORS.get(exc.code)
    if error_class is None:
        error = ApiError(exc.description)
        error.status, error.title = exc.code or 500, exc.name
    else:
        error = error_class(_describe(exc))
    if exc.code == 405 and getattr(exc, "valid_methods", None):
        error.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    return render_error(error)


def _describe(exc: HTTPException) -> str:
    if exc.code == 404:
        return f"no resource at {request.path}"
    if exc.code == 405:
        return f"{request.method} is not allowed on {request.path}"
    if exc.code == 413:
        return _describe_413()
    return exc.description or exc.name


def _handle_crash(exc: Exception):
    trace_id = request_id()
    # The route's rule, not the path: a path can hold a link's token. The access log line
    # with the same request id has the (redacted) path.
    where = request.url_rule.rule if request.url_rule else "an unrouted request"
    log.error("unhandled error in %s %s (trace_id %s)", request.method, where, trace_id,
              exc_info=exc)
    return render_error(errors.ServerError(
        "something went wrong on our side; quote the trace_id when you report it",
        trace_id=trace_id))


def _refuse_large_body() -> None:
    """413 for a body over its limit, from its announced length before any of it is read;
    a chunked body is held to the same limit as it is read."""
    this = request._get_current_object()
    if not this.content_length and "Transfer-Encoding" not in this.headers:
        return  # no body
    this.max_content_length = body_limit(current_app._get_current_object(), this.endpoint,
                                         this.path, this.headers.get("Authorization", ""),
                                         this.cookies)
    if (this.content_length or 0) > this.max_content_length:
        raise errors.PayloadTooLarge(_describe_413())


def _describe_413() -> str:
    return f"the request body is larger than the limit of {request.max_content_length} bytes"


def _add_request_id(response: Response) -> Response:
    response.headers["X-Request-Id"] = request_id()
    return response


def install(app: Flask) -> None:
    """Register the error handlers and the request-id header on `app`."""
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_crash)
    app.before_request(_refuse_large_body)
    app.after_request(_add_request_id)
