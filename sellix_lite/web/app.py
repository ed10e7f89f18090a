"""The Flask application factory.

`create_app` is pure: it reads no file or environment and starts no thread, so tests and
`serve` build the same app from a Config. The scheduler and waitress live in `server.py`.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from types import SimpleNamespace

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from werkzeug.routing import Rule

from .. import __version__
from ..config import Config
from ..security import Signer
from . import dashboard, downloads, html, ipn, portal, reference, requestlog, responses, storefront
from .api import bp as api_bp
from .bodylimits import JSON_BODY_BYTES
from .context import Runtime, get_db, release_db
from .html import TemplateEnvironment
from .surfaces import surface_of
from .wellknown import bp as wellknown_bp

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # sellix_lite/


class LazyBuilderRule(Rule):
    """A URL rule that compiles its URL builder the first time it builds a URL.

    Werkzeug compiles two builder functions for each rule as it is added: for the 88 rules
    the app had when this was measured, that took about two thirds of `create_app`, and so
    of every start, while most rules (the API's) never build a URL.
    """

    def _compile_builder(self, append_unknown: bool = True):
        compiled = None

        def build(rule: Rule, *args, **kwargs):
            nonlocal compiled
            if compiled is None:  # two threads may both compile; either result is right
                compiled = Rule._compile_builder(rule, append_unknown)
            return compiled(rule, *args, **kwargs)

        return build


class SellixFlask(Flask):
    """Flask for an app whose views and hooks are all plain functions."""

    url_rule_class = LazyBuilderRule
    jinja_environment = TemplateEnvironment

    def ensure_sync(self, func):
        # Flask asks `inspect` whether each view and hook is `async def` on every call,
        # eight times a request; none of ours is.
        return func


class DashboardSessions(SecureCookieSessionInterface):
    """Signed-cookie sessions, opened only for the dashboard: the API, the shop and the IPN
    endpoint never use one, and opening one costs a serializer per request."""

    def open_session(self, app, request):
        if surface_of(request.path) != "dashboard":
            return None  # Flask substitutes a read-only empty session
        return super().open_session(app, request)

    def open_session_from_cookie(self, app, cookies):
        """The session that request cookies carry; empty when none is genuine and current."""
        return super().open_session(app, SimpleNamespace(cookies=cookies))


def resource_dir(name: str) -> Path:
    """`templates` or `static`: inside the installed package, else beside it in a checkout."""
    installed = PACKAGE_DIR / name
    return installed if installed.is_dir() else PACKAGE_DIR.parent / name


def create_app(config: Config, secret_key: str, boot_id: str | None = None) -> Flask:
    """Build the app for `config`, signing with `secret_key`.

    `boot_id` names this process in the claims it leaves in the database (idempotency keys,
    leased deliveries); the jobs of the same process use the same id.
    """
    app = SellixFlask(__name__, template_folder=str(resource_dir("templates")),
                      static_folder=str(resource_dir("static")))
    app.config["SECRET_KEY"] = secret_key
    # Each request's own limit is set by a hook (bodylimits.py); this is the default.
    app.config["MAX_CONTENT_LENGTH"] = JSON_BODY_BYTES
    app.json.sort_keys = False
    app.session_interface = DashboardSessions()
    # Behind TLS the dashboard's session cookie must never travel over plain HTTP.
    app.config["SESSION_COOKIE_SECURE"] = config.public_url.startswith("https://")
    app.extensions["sellix"] = Runtime(config=config, signer=Signer(secret_key),
                                       boot_id=boot_id or secrets.token_hex(8))

    responses.install(app)
    requestlog.install(app)
    app.register_blueprint(api_bp)
    app.register_blueprint(ipn.bp)
    app.register_blueprint(downloads.bp)
    app.register_blueprint(storefront.bp)
    app.register_blueprint(portal.bp)
    app.register_blueprint(reference.bp)
    app.register_blueprint(wellknown_bp)
    dashboard.install(app)
    html.install(app)
    app.jinja_env.globals["shop"] = config.shop
    app.teardown_appcontext(release_db)
    app.add_url_rule("/healthz", "healthz", _healthz)
    return app


def _healthz():
    get_db().execute("SELECT 1").fetchone()
    return {"status": "ok", "version": __version__}
