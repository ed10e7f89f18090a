"""The `sellix-lite` command line (README.md, Command line).

Expected failures (a bad config file, a busy port, an unknown key id) print one line on
stderr and exit 1; usage errors are click's (exit 2). `--config` is accepted before or after
any command's name. A command that opens the database names it on stderr, so a key minted
into the wrong one is plain to see; stdout keeps only what a script reads (a secret, JSON,
the list of keys, the schema version).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import click

from . import __version__, backups, db as storage
from .clock import utcnow
from .config import Config, ConfigError, load_config
from .errors import ApiError, NotFound
from .migrations import SchemaTooNew, migrate
from .server import StartupError, exclusive_lock, prepare, serve as run_server
from .services import admin as admin_service, api_keys
from .services.admin import WeakPassword
from .services.scope import MODES

PRIVATE_UMASK = 0o077


class CommandError(Exception):
    """A command can't do what was asked; the message says why in one line."""


EXPECTED_ERRORS = (ConfigError, StartupError, CommandError, SchemaTooNew, ApiError,
                   WeakPassword, backups.BackupError, sqlite3.Error, OSError)


class Cli(click.Group):
    """A click group that turns expected errors into one line and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EXPECTED_ERRORS as exc:
            click.echo(f"error: {_one_line(exc)}", err=True)
            sys.exit(1)


def _one_line(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@click.group(cls=Cli)
@click.option("--config", "config_path", envvar="SELLIX_LITE_CONFIG",
              type=click.Path(dir_okay=False), help="TOML configuration file.")
@click.version_option(__version__, prog_name="sellix-lite")
@click.pass_context
def cli(ctx, config_path):
    """sellix-lite: a self-hosted store engine for selling digital goods for crypto."""
    # What a command creates (the database and its WAL, uploads, outbox messages with
    # license keys, the secret key, backups) is for the shop's own user alone.
    os.umask(PRIVATE_UMASK)
    ctx.obj = config_path


def _config() -> Config:
    return load_config(click.get_current_context().find_root().obj)


def _config_after_the_name(ctx, param, value) -> None:
    """`--config` given after a command's name: it wins over the one before (or the
    environment's), which the group has already stored."""
    if value is not None:
        ctx.find_root().obj = value


def _accept_config_everywhere(group: click.Group) -> None:
    """Give every command and subgroup under `group` its own `--config` option."""
    for command in group.commands.values():
        command.params.append(click.Option(
            ["--config"], type=click.Path(dir_okay=False), expose_value=False,
            callback=_config_after_the_name, help="TOML configuration file."))
        if isinstance(command, click.Group):
            _accept_config_everywhere(command)


def _say(message: str) -> None:
    """A line for the person at the terminal (stderr), never for a script reading stdout."""
    click.echo(message, err=True)


def _open_db(config: Config):
    """The database, created and migrated if need be."""
    prepare(config)
    return storage.connect(config.database_path)


@cli.command()
@click.option("--host", help="Address to listen on (default from config: 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (0 picks a free one).")
def serve(host, port):
    """Serve the API, storefront and dashboard until SIGINT or SIGTERM."""
    from .logsetup import configure

    config = _config()
    configure(config.server.log_format)
    run_server(config, host or config.server.host,
               config.server.port if port is None else port)


@cli.command("blockpn-sim")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8090, show_default=True,
              help="Port (0 picks a free one).")
@click.option("--data", "data_path", type=click.Path(dir_okay=False),
              help="SQLite file of the simulator's ledger (default: a temporary one).")
@click.option("--api-key", help="Bearer key clients must send (default: [blockpn] api_key, "
              "else sim-api-key).")
@click.option("--ipn-secret", help="Key that signs IPN callbacks (default: [blockpn] "
              "ipn_secret, else sim-ipn-secret).")
@click.option("--payout-confirm-seconds", type=click.IntRange(min=0),
              help="Seconds from queued to confirmed (default: [sandbox] value).")
def blockpn_sim(host, port, data_path, api_key, ipn_secret, payout_confirm_seconds):
    """Serve the BlockPN simulator (live mode, offline) until SIGINT or SIGTERM."""
    from . import blockpn_sim
    from .logsetup import configure

    config = _config()
    configure(config.server.log_format)
    blockpn_sim.serve(
        host=host, port=port, data_path=data_path,
        api_key=api_key or config.blockpn.api_key or blockpn_sim.DEV_API_KEY,
        ipn_secret=ipn_secret or config.blockpn.ipn_secret or blockpn_sim.DEV_IPN_SECRET,
        payout_confirm_seconds=config.sandbox.payout_confirm_seconds
        if payout_confirm_seconds is None else payout_confirm_seconds)


@cli.command()
def init():
    """Create the data folder, the database and the secret key."""
    config = _config()
    _, version = prepare(config)
    _say(f"data folder: {config.data_dir}")
    _say(f"database:    {config.database_path} (schema version {version})")
    key_place = "the config file" if config.security.secret_key else \
        str(config.data_dir / "secret_key")
    _say(f"secret key:  {key_place}")


@cli.command("migrate")
def migrate_command():
    """Apply pending schema migrations and print the schema version."""
    config = _config()
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = storage.connect(config.database_path)
    try:
        version = migrate(db)
    finally:
        db.close()
    _say(f"migrated {config.database_path}")
    click.echo(f"schema version {version}")


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
def backup(path):
    """Write a consistent copy of the database to PATH, even while the server runs."""
    config = _config()
    target = backups.write_copy(config.database_path, Path(path).resolve())
    _say(f"backed up {config.database_path} to {target}")


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
def restore(path):
    """Put the backup at PATH in place of the database; the server must be stopped."""
    config = _config()
    with exclusive_lock(config.database_path, purpose="restoring"):
        kept = backups.restore(Path(path).resolve(), config.database_path, utcnow())
    if kept:
        click.echo(f"the database it replaced is kept as {kept}")
    click.echo(f"restored {config.database_path} from {Path(path).resolve()}; "
               "start the server to bring its schema up to date")


@cli.group()
def keys():
    """Mint, list and revoke API keys."""


@keys.command("mint")
@click.option("--name", required=True, help="A label for the key.")
@click.option("--ability", "abilities", multiple=True, type=click.Choice(api_keys.ABILITIES),
              help="An ability to grant (repeat for several).")
@click.option("--all", "all_abilities", is_flag=True, help="Grant every ability.")
@click.option("--mode", type=click.Choice(MODES), default="live", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the key object as JSON.")
def keys_mint(name, abilities, all_abilities, mode, as_json):
    """Mint an API key; the secret is printed alone on the last line."""
    if bool(abilities) == all_abilities:
        raise click.UsageError("give either --ability (one or more) or --all")
    chosen = list(api_keys.ABILITIES) if all_abilities else list(dict.fromkeys(abilities))
    config = _config()
    db = _open_db(config)
    try:
        key = api_keys.mint(db, name=name, abilities=chosen, mode=mode)
    finally:
        db.close()
    _say(f"minted {key['id']} ({mode}) with {', '.join(chosen)} in {config.database_path}")
    if as_json:
        click.echo(json.dumps(key, indent=2))
        return
    _say("the secret is shown this once; store it now:")
    click.echo(key["secret"])


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
def keys_list(as_json):
    """List every API key of both modes, newest first."""
    config = _config()
    db = _open_db(config)
    try:
        rows = api_keys.list_all(db)
    finally:
        db.close()
    _say(f"{len(rows)} API key{'' if len(rows) == 1 else 's'} in {config.database_path}")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        click.echo(f"{row['id']}  {row['mode']:4}  {state:28}  {row['name']}  "
                   f"[{', '.join(row['abilities'])}]")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id):
    """Revoke the key KEY_ID; it fails from the next request on."""
    config = _config()
    db = _open_db(config)
    try:
        api_keys.revoke_any(db, key_id)
    except NotFound as exc:
        raise CommandError(f"{exc.detail} in {config.database_path}") from None
    finally:
        db.close()
    _say(f"revoked {key_id} in {config.database_path}")


@cli.group("admin")
def admin_group():
    """Manage the dashboard's sign-in."""


@admin_group.command("set-password")
def admin_set_password():
    """Set the dashboard password (prompted twice on a terminal, else one line of stdin)."""
    if sys.stdin.isatty():
        password = click.prompt("New dashboard password", hide_input=True,
                                confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    config = _config()
    db = _open_db(config)
    try:
        admin_service.set_password(db, password)
    finally:
        db.close()
    _say(f"dashboard password set in {config.database_path}; it works at the next sign-in")


_accept_config_everywhere(cli)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="sellix-lite")
