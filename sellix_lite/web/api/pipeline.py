"""The request pipeline every /v1 operation goes through (docs/architecture.md).

Order of checks: authentication, rate limit, ability, idempotency, then body and query
validation and execution, so a 401, 403 or 429 is never stored under an idempotency key.
Public operations (the license checks a merchant's software makes) take no key: they are
counted per client address, then validated and executed, with no idempotency records.
Routes are declared with `operation`, which also records what the OpenAPI document says of
them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps

from flask import Blueprint, Request, Response, g, request

from ...errors import (
    ApiError,
    ForbiddenScope,
    InvalidRequest,
    RateLimited,
    Unauthenticated,
    UnsupportedMediaType,
)
from ...ratelimit import client_of
from ...services import api_keys, idempotency
from ...services.scope import Scope
from ...validation import Schema
from ..context import Runtime, get_db, runtime
from ..responses import compact_json, json_response, problem_response, refuse_lone_surrogates

READ_METHODS = ("GET", "HEAD")
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")
# PUT replaces a whole resource: sending it twice already has the effect of sending it once.
IDEMPOTENCY_METHODS = ("POST", "PATCH", "DELETE")


@dataclass(frozen=True)
class Operation:
    """What one route does, for the pipeline and for the OpenAPI document."""

    method: str
    rule: str
    endpoint: str
    summary: str
    description: str
    ability: str | None
    tag: str
    body: Schema | None = None
    query: Schema = field(default_factory=Schema)
    status: int = 200
    idempotency_required: bool = False
    # A field of the response shown once (a new secret): never kept in idempotency records.
    secret_field: str | None = None
    # The body is a file the view streams itself, not a JSON object.
    upload: bool = False
    # The returned object's schema in `objects.OBJECTS`; "list:Name" for a page of them.
    response: str = ""
    # Error statuses the view answers beyond the pipeline's own (502 where BlockPN is called).
    errors: tuple[int, ...] = ()
    # No API key: counted per client address (`license_checks_per_minute_per_ip`).
    public: bool = False
    # A second success status; the view then returns (object, status).
    alternate_status: int | None = None
    # Another type than JSON: the view returns the whole Response (a stream) itself.
    media_type: str = "application/json"


OPERATIONS: list[Operation] = []
# Endpoints of the blueprint that need no API key (the OpenAPI document).
PUBLIC_ENDPOINTS: set[str] = set()


def operation(bp: Blueprint, method: str, rule: str, *, summary: str, tag: str,
              ability: str | None, body: Schema | None = None, query: Schema | None = None,
              status: int = 200, idempotency_required: bool = False,
              secret_field: str | None = None, upload: bool = False,
              response: str = "", errors: tuple[int, ...] = (), public: bool = False,
              alternate_status: int | None = None,
              media_type: str = "application/json") -> Callable:
    """Register `view` for `method rule` on `bp`, running it through the pipeline.

    The view receives the path parameters, `query` (validated) and, for writes, `body`
    (the parsed JSON object, validated by the service that owns the rule). It returns the
    object to answer with, sent as JSON with `status` (or, with `alternate_status`, an
    `(object, status)` pair). A `public` operation needs no API key.
    """

    def decorate(view: Callable) -> Callable:
        op = Operation(method, rule, view.__name__, summary, (view.__doc__ or "").strip(),
                       ability, tag, body, query or Schema(), status, idempotency_required,
                       secret_field, upload, response, errors, public, alternate_status,
                       media_type)

        @wraps(view)
        def run(**path_args):
            if op.public:
                _count_public_request(runtime(), request.remote_addr, g._get_current_object())
                return _execute(op, view, path_args)
            _require_ability(op.ability)
            if method in IDEMPOTENCY_METHODS:
                return _idempotent(op, lambda: _execute(op, view, path_args))
            return _execute(op, view, path_args)

        bp.add_url_rule(rule, endpoint=view.__name__, view_func=run, methods=[method],
                        provide_automatic_options=False)
        OPERATIONS.append(op)
        if public:
            PUBLIC_ENDPOINTS.add(f"{bp.name}.{view.__name__}")
        return view

    return decorate


def scope() -> Scope:
    """The mode-bound database of the authenticated key."""
    return g.scope


def caller() -> dict:
    """The authenticated API key's row."""
    return g.api_key


def authenticate_request() -> None:
    """Blueprint hook: resolve the bearer key and count the request against its limit."""
    this = request._get_current_object()  # one lookup of the proxy for all uses below
    if this.endpoint in PUBLIC_ENDPOINTS:
        return
    shared, db = runtime(), get_db()
    try:
        key = api_keys.authenticate(db, _bearer_secret(this))
        if key is None:
            raise Unauthenticated("the API key is unknown or revoked")
    except Unauthenticated:
        _count_failure(shared, this.remote_addr)
        raise
    context = g._get_current_object()
    context.api_key, context.api_key_id = key, key["id"]
    context.scope = shared.scope(db, key["mode"])
    _count_request(shared, this.method, key["id"], context)
    api_keys.touch(db, key)


def _count_failure(shared: Runtime, address: str | None) -> None:
    """Count a failed authentication against the client's address; past the limit, 429.

    Only failures are limited: a valid key from a blocked address still gets in, so a
    stranger guessing keys from a shared address can't lock its real users out.
    """
    limit = shared.config.limits.failed_auths_per_minute_per_ip
    failures = shared.limiter.hit(f"auth-failures:{client_of(address)}", limit)
    if not failures.allowed:
        raise RateLimited("too many failed authentications from this address",
                          headers={"Retry-After": str(failures.reset_seconds)})


def add_rate_limit_headers(response: Response) -> Response:
    """Blueprint hook: the IETF RateLimit fields for the bucket the request counted in."""
    response.headers.update(g.get("rate_limit_headers", {}))
    return response


def _bearer_secret(this: Request) -> str:
    header = this.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if not header:
        raise Unauthenticated("send your API key as `Authorization: Bearer sx_...`")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthenticated("the Authorization header must be `Bearer <secret>`")
    return secret.strip()


def _count_request(shared: Runtime, method: str, key_id: str, context) -> None:
    limits = shared.config.limits
    bucket, limit = (("reads", limits.reads_per_minute) if method in READ_METHODS
                     else ("writes", limits.writes_per_minute))
    _count(shared, bucket, key_id, limit, context)


def _count_public_request(shared: Runtime, address: str | None, context) -> None:
    """A public license check has no key to count against: its client's address stands in."""
    limit = shared.config.limits.license_checks_per_minute_per_ip
    _count(shared, "license_checks", client_of(address), limit, context)


def _count(shared: Runtime, bucket: str, client: str, limit: int, context) -> None:
    """Count the request in `client`'s `bucket`, prepare the RateLimit fields; past the
    limit, 429."""
    decision = shared.limiter.hit(f"{bucket}:{client}", limit)
    window = shared.limiter.window
    context.rate_limit_headers = {
        "RateLimit-Policy": f'"{bucket}";q={limit};w={window}',
        "RateLimit": f'"{bucket}";r={decision.remaining};t={decision.reset_seconds}',
    }
    if not decision.allowed:
        raise RateLimited(f"more than {limit} {bucket.replace('_', ' ')} in {window} "
                          "seconds; slow down",
                          headers={"Retry-After": str(decision.reset_seconds)})


def _require_ability(ability: str | None) -> None:
    if ability and ability not in g.api_key["abilities"]:
        raise ForbiddenScope(f"this API key lacks the ability {ability}", ability=ability)


def _execute(op: Operation, view: Callable, path_args: dict) -> Response:
    kwargs = dict(path_args)
    kwargs["query"] = op.query.validate(request.args.to_dict(), from_query=True)
    if op.method in WRITE_METHODS and not op.upload:
        kwargs["body"] = json_body()
        if op.body is None:
            Schema().validate(kwargs["body"])  # this operation takes no body: no field is known
    answer = view(**kwargs)
    if op.media_type != "application/json":
        return answer
    if op.alternate_status is not None:
        return json_response(*answer)
    return json_response(answer, op.status)


def json_body() -> dict:
    """The request body as a JSON object; an empty body is `{}`.

    Bodies over the app's MAX_CONTENT_LENGTH (1 MiB) make `get_data` raise a 413.
    """
    this = request._get_current_object()
    raw = this.get_data(cache=True)
    if not raw.strip():
        return {}
    mimetype = this.mimetype
    if not (mimetype == "application/json" or mimetype.endswith("+json")):
        raise UnsupportedMediaType(
            f"send the body as application/json, not {mimetype or 'no content type'}")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {_short(exc)}") from None
    refuse_lone_surrogates(raw, value)
    if not isinstance(value, dict):
        raise InvalidRequest("the body must be a JSON object")
    return value


def _short(exc: Exception) -> str:
    return str(exc).split("\n")[0][:200] if isinstance(exc, ValueError) else "nested too deeply"


def _idempotent(op: Operation, handler: Callable[[], Response]) -> Response:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        if op.idempotency_required:
            raise InvalidRequest("this request moves money: send an Idempotency-Key header",
                                 errors={"Idempotency-Key": "is required"})
        return handler()
    idempotency.check_key(key)
    fingerprint = idempotency.fingerprint(request.method, request.full_path,
                                          request.get_data(cache=True))
    result, replayed = idempotency.run_once(
        get_db(), g.api_key["id"], key, fingerprint, runtime().boot_id,
        lambda: _as_response(handler), lambda response: _storable(op, response))
    if replayed:
        return Response(result.body, status=result.status,
                        headers={**result.headers, "Idempotent-Replayed": "true"})
    return result


def _storable(op: Operation, response: Response) -> idempotency.StoredResponse | None:
    """What a retry gets back; None for answers a retry should not get (5xx, 429)."""
    if response.status_code >= 500 or response.status_code == 429:
        return None
    return idempotency.StoredResponse(response.status_code,
                                      {"Content-Type": response.content_type},
                                      _storable_body(op, response))


def _storable_body(op: Operation, response: Response) -> bytes:
    """The body to replay; a secret shown once is withheld (null) from the stored copy."""
    body = response.get_data()
    if op.secret_field and response.status_code < 300:
        payload = json.loads(body)
        if op.secret_field in payload:
            payload[op.secret_field] = None
            body = compact_json(payload).encode()
    return body


def _as_response(handler: Callable[[], Response]) -> Response:
    """Run the handler, turning an expected error into its response so it can be stored."""
    try:
        return handler()
    except ApiError as error:
        return problem_response(error)
