"""Which part of the site a path belongs to: the one rule every hook asks.

A surface is a path's first segment: `/v1` and everything under `/v1/` is the API, while
`/v1x` is not. Paths no other surface claims are the shop's (`/`, `/product/...`, and the
test shop under `/test/`).
"""

from __future__ import annotations

SURFACES = {
    "v1": "api",
    "ipn": "ipn",
    "dashboard": "dashboard",
    "docs": "docs",
    "download": "download",
    "static": "static",
    "healthz": "health",
    ".well-known": "well-known",
}
# Surfaces read by programs: their errors are problem JSON and they get no HTML headers.
MACHINE_SURFACES = frozenset({"api", "ipn", "well-known"})


def first_segment(path: str) -> str:
    """`v1` for `/v1/products`, `` for `/`."""
    return path[1:].partition("/")[0]


def surface_of(path: str) -> str:
    """`api`, `ipn`, `dashboard`, `docs`, `download`, `static`, `health`, `well-known` or
    `shop`."""
    return SURFACES.get(first_segment(path), "shop")


def is_machine_facing(path: str) -> bool:
    """Whether `path` is read by programs (the API, BlockPN's callbacks, the published keys)
    rather than people."""
    return surface_of(path) in MACHINE_SURFACES


def shop_mode(path: str) -> str:
    """The mode of a shop page: `test` under `/test/`, else `live`."""
    return "test" if first_segment(path) == "test" else "live"
