"""Copies of the database: on demand (`sellix-lite backup`), on a schedule, and back again
(`sellix-lite restore`).

A copy is made with VACUUM INTO, which reads one snapshot: writes that go on meanwhile are
wholly in the copy or not at all, and the server keeps serving. A copy holds everything the
shop knows (buyers' emails, key hashes, unsold license keys), so it is written 0600.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from . import db as storage
from .config import Config

SCHEDULED_NAME = re.compile(r"sellix-(\d{8}T\d{6}Z)\.db")
STAMP = "%Y%m%dT%H%M%SZ"


class BackupError(Exception):
    """A backup or restore that can't be done; the message says why in one line."""


def write_copy(database: Path, target: Path) -> Path:
    """Copy the live database to `target` (a new file), consistent while it is written to."""
    if target.exists():
        raise BackupError(f"{target} already exists; choose a new file name")
    if not database.exists():
        raise BackupError(f"there is no database at {database} to back up")
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    db = storage.connect(database)
    try:
        db.execute("VACUUM INTO ?", (str(partial),))
    finally:
        db.close()
    os.chmod(partial, 0o600)
    os.replace(partial, target)
    return target


def run_scheduled(config: Config, now: datetime) -> Path | None:
    """Back up when the newest scheduled copy is `every_hours` old (or there is none), then
    delete all but the newest `keep`. Returns the new copy, if one was made.

    Deciding by the newest copy's age, not by a timer, means restarts neither skip a
    backup nor pile them up.
    """
    settings = config.backups
    if not settings.every_hours:
        return None
    folder = config.backups_dir
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for leftover in folder.glob("sellix-*.db.partial"):  # a copy cut short by a crash
        leftover.unlink()
    copies = sorted(path for path in folder.iterdir() if SCHEDULED_NAME.fullmatch(path.name))
    made = None
    if not copies or _taken_at(copies[-1]) <= now - timedelta(hours=settings.every_hours):
        made = write_copy(config.database_path, folder / f"sellix-{now.strftime(STAMP)}.db")
        copies.append(made)
    for old in copies[:-settings.keep]:
        old.unlink()
    return made


def _taken_at(path: Path) -> datetime:
    stamp = SCHEDULED_NAME.fullmatch(path.name).group(1)
    return datetime.strptime(stamp, STAMP).replace(tzinfo=UTC)


def restore(backup: Path, database: Path, now: datetime) -> Path | None:
    """Put `backup` in place of `database`; the server must be stopped.

    The database it replaces, with its WAL, is kept beside it as
    `NAME.before-restore-STAMP`; that path is returned (None for a new data folder).
    """
    check_backup(backup)
    database.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    kept = None
    present = [suffix for suffix in ("", "-wal", "-shm") if Path(f"{database}{suffix}").exists()]
    if present:
        kept = database.with_name(f"{database.name}.before-restore-{now.strftime(STAMP)}")
        # The WAL and shared-memory files belong to the old database (even one deleted by
        # hand): moved along with it, they can never be replayed into the restored one.
        for suffix in present:
            os.replace(Path(f"{database}{suffix}"), Path(f"{kept}{suffix}"))
    partial = database.with_name(database.name + ".partial")
    shutil.copyfile(backup, partial)
    os.chmod(partial, 0o600)
    with partial.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, database)
    return kept


def check_backup(backup: Path) -> None:
    """Refuse a file that is not a whole, readable sellix-lite database."""
    if not backup.is_file():
        raise BackupError(f"there is no backup at {backup}")
    try:
        conn = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
        try:
            (result,) = conn.execute("PRAGMA integrity_check").fetchone()
            tables = {row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{backup} is not a readable SQLite database ({exc})") from None
    if result != "ok":
        raise BackupError(f"{backup} is damaged: {result}")
    if "_sqlite_migrations" not in tables or "products" not in tables:
        raise BackupError(f"{backup} is not a sellix-lite database")
