"""`sellix-lite serve`: prepare the data folder, start the scheduler and waitress, stop cleanly.

One process serves one database: a lock file next to it keeps a second `serve` away, since
two schedulers would deliver the same webhook or send the same payout twice.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import signal
import stat
import sys
from contextlib import contextmanager
from pathlib import Path

import waitress

from . import db as storage
from .config import Config
from .jobs import JobContext, SenderPool, start_scheduler, stop_scheduler
from .migrations import migrate
from .security import load_secret_key
from .web import bodylimits
from .web.app import create_app

log = logging.getLogger("sellix_lite")
# waitress refuses bodies over its limit itself, as plain text. Its limit sits well above the
# limits bodylimits.py holds each request to first, so that every body refused gets the
# app's answer (problem JSON under /v1 and /ipn).
SERVER_BODY_HEADROOM_BYTES = 64 * 1024 * 1024
# How long a thread may keep the interpreter lock while another one waits for it (Python's
# default is 5 ms). waitress's one network thread reads and answers every connection; behind a
# busy worker it waited up to that long each time. 1 ms served about 10% more writes in
# bench/ (reads unchanged); 0.2 ms lost, to switching.
SWITCH_INTERVAL_SECONDS = 0.001
OUTBUF_HIGH_WATERMARK_BYTES = 1024 * 1024


class StartupError(Exception):
    """The server can't start; the message says why in one line."""


def prepare(config: Config) -> tuple[str, int]:
    """Create the data folder, the secret key and the schema; return (key, schema version)."""
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret_key = load_secret_key(config.security.secret_key, config.data_dir)
    db = storage.connect(config.database_path)
    try:
        version = migrate(db)
    finally:
        db.close()
    return secret_key, version


@contextmanager
def exclusive_lock(database_path: Path, purpose: str = "serving"):
    """Hold the database's lock file for as long as this process serves (or restores) it."""
    database_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = database_path.with_name(database_path.name + ".lock")
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        advice = "" if purpose == "serving" else f"; stop it before {purpose} it"
        raise StartupError(
            f"another sellix-lite is already serving {database_path}{advice}") from None
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def serve(config: Config, host: str, port: int) -> None:
    """Run until SIGINT or SIGTERM; returns after the scheduler and server have stopped."""
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    with exclusive_lock(config.database_path):
        secret_key, version = prepare(config)
        warn_if_open_to_others(config.data_dir)
        app = LateApp()
        server = _create_server(app, config, host, port)
        # Links fall back to the address listened on: the flags', and port 0 made real.
        config = config.listening_on(host, server.effective_port)
        ctx = JobContext(config, secret_key, senders=SenderPool(config))
        app.wsgi = create_app(config, secret_key, boot_id=ctx.boot_id)
        bodylimits.install(server, app.wsgi)
        scheduler = start_scheduler(ctx)
        stop_on_sigterm()
        url = f"http://{host}:{server.effective_port}"
        warn_of_private_targets(config, host)
        log.info("sellix-lite serving on %s (database %s, schema version %s)",
                 url, config.database_path, version)
        try:
            server.run()  # returns (or raises) on SIGINT and SIGTERM
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            log.info("stopping: waiting for running jobs to finish")
            server.close()
            stop_scheduler(scheduler, ctx)
        log.info("sellix-lite stopped")


class LateApp:
    """A WSGI app given to waitress before it exists: the app needs the configuration with
    the port waitress bound, which is known only once the server is created. Nothing is
    served before `wsgi` is set."""

    wsgi = None

    def __call__(self, environ, start_response):
        return self.wsgi(environ, start_response)


def warn_if_open_to_others(data_dir: Path) -> None:
    """Log a warning when users other than the shop's can enter the data folder, which
    holds buyers' emails, license keys and the goods (made by a release before umask 077,
    or by hand)."""
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & 0o077:
        log.warning("the data folder %s is readable by other users (mode %04o); chmod 700 %s",
                    data_dir, mode, data_dir)


def warn_of_private_targets(config: Config, host: str) -> None:
    """Test keys may make the server call its own network; say so where others can reach it."""
    if config.webhooks.allow_private_targets_in_test and not _is_loopback(host):
        log.warning("listening on %s with [webhooks] allow_private_targets_in_test = true: "
                    "anyone with a test key can make this server call loopback and private "
                    "addresses and read their answers; set it to false on a public server",
                    host)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _create_server(app, config: Config, host: str, port: int):
    options = {}
    if config.server.trusted_proxy:
        options = {"trusted_proxy": config.server.trusted_proxy,
                   "trusted_proxy_headers": {"x-forwarded-for", "x-forwarded-proto",
                                             "x-forwarded-host", "x-forwarded-port"},
                   "clear_untrusted_proxy_headers": True}
    try:
        server = waitress.create_server(
            app, host=host, port=port, threads=config.server.threads,
            max_request_body_size=config.storage.max_upload_bytes + SERVER_BODY_HEADROOM_BYTES,
            # waitress's default of 100 open connections lets a hundred idle keep-alive
            # clients lock everyone else out; allow more, and drop idle ones sooner.
            connection_limit=1000, channel_timeout=60,
            # A streamed response (the orders export) waits for its client past this much
            # unsent; waitress's default of 16 MiB held that much per slow download.
            outbuf_high_watermark=OUTBUF_HIGH_WATERMARK_BYTES,
            ident="sellix-lite", **options)
    except OSError as exc:
        raise StartupError(f"can't listen on {host}:{port}: {exc.strerror}") from None
    return server


def stop_on_sigterm() -> None:
    """Make SIGTERM stop a waitress server the way Ctrl-C (SIGINT) does."""
    def handler(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)
