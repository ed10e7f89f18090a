"""Email: every message is first a row of the outbox table, written in the transaction of
the change that causes it; a job then sends it (docs/api.md, "Delivery email").

With `[email] smtp_host` set, the job sends through SMTP and retries a failing server on
`[email] retry_schedule`; a failing mail server never fails the change that queued the
mail. Without SMTP, each message is written as an `.eml` file in the data folder's
`outbox/` and stays readable in the table (the dashboard shows it).
"""

from __future__ import annotations

import logging
import re
import smtplib
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import sqlite_utils

from ..clock import iso, now_iso, utcnow
from ..config import EmailConfig
from ..db import write_txn
from ..ids import new_id
from ..validation import EMAIL_PATTERN
from . import files, retries
from .scope import Scope, list_query

# Each exchange with the mail server ends within this; it is also the lease's deadline. A
# slow server can take longer over a whole message, and the lease then lapses early, which
# is harmless: only the email job claims messages, one run at a time.
SMTP_TIMEOUT_SECONDS = 30
# The outbox keeps no lease expiry of its own: a claim pushes `next_attempt_at` past the
# deadline instead (the API never shows it).
QUEUE = retries.Queue("emails", until=None)
LIST = list_query()
log = logging.getLogger("sellix_lite.emails")
PLAIN_ADDRESS = re.compile(EMAIL_PATTERN)


def one_line(text: str) -> str:
    """`text` fit for a header: each line break (CR, LF or both) becomes a space."""
    return " ".join(text.splitlines())


def queue(db: sqlite_utils.Database, *, mode: str, kind: str, to: str, subject: str,
          body: str, related_id: str | None = None) -> str:
    """Add a message to the outbox inside the caller's transaction; returns its id."""
    email_id = new_id("em")
    db.execute(
        "INSERT INTO emails (id, mode, kind, to_address, subject, body_text, related_id,"
        " status, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
        (email_id, mode, kind, to, one_line(subject), body, related_id, now_iso(), now_iso()))
    return email_id


def render(row: dict) -> dict:
    """The outbox entry as the API and dashboard show it."""
    return {"id": row["id"], "kind": row["kind"], "to": row["to_address"],
            "subject": row["subject"], "body": row["body_text"], "status": row["status"],
            "attempts": row["attempts"], "last_error": row["last_error"],
            "related_id": row["related_id"], "created_at": row["created_at"],
            "sent_at": row["sent_at"]}


def list_page(scope: Scope, query: dict) -> dict:
    """A page of this mode's outbox, newest first."""
    return scope.page("emails", query, render)


def send_due(db: sqlite_utils.Database, config: EmailConfig, from_address: str,
             outbox_dir: Path, boot_id: str, limit: int = 50) -> int:
    """Send (or write to the outbox folder) up to `limit` messages that are due, one claim
    at a time; returns how many went out.

    Each message succeeds or fails on its own: one that can't even be built (an address an
    older version let in) is retried and then failed like one the server refused.
    """
    done = 0
    for _ in range(limit):
        claimed = _claim_next(db, boot_id)
        if claimed is None:
            break
        error = _attempt(claimed, config, from_address, outbox_dir)
        if error is None:
            _finish(db, claimed["id"], "sent" if config.smtp_host else "outbox")
            done += 1
        else:
            _retry_later(db, claimed, error, config.retry_schedule)
    return done


def _attempt(row: dict, config: EmailConfig, from_address: str,
             outbox_dir: Path) -> str | None:
    """Deliver one message; the error text, or None on success."""
    try:
        return _deliver(row, config, from_address, outbox_dir)
    except Exception as exc:  # whatever it is, it is this message's alone
        error = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("email %s could not be sent: %s", row["id"], error)
        return error


def _deliver(row: dict, config: EmailConfig, from_address: str,
             outbox_dir: Path) -> str | None:
    message = _message(row, from_address)
    if config.smtp_host:
        return _send_smtp(config, message)
    _write_eml(outbox_dir, row["id"], message)
    return None


def _claim_next(db: sqlite_utils.Database, boot_id: str) -> dict | None:
    """Lease the oldest due message to this process; a claim of a dead process is taken
    over at once, a lapsed one of this process after its deadline."""
    claimable, params = QUEUE.claimable(now_iso(), boot_id)
    with write_txn(db):
        claimed = QUEUE.claim(db, f"SELECT id FROM emails WHERE status = 'pending' AND "
                                  f"{claimable} ORDER BY id LIMIT 1", params,
                              deadline_seconds=SMTP_TIMEOUT_SECONDS, boot_id=boot_id)
    return claimed[0] if claimed else None


def _finish(db, email_id: str, status: str) -> None:
    with write_txn(db):
        db.execute("UPDATE emails SET status = ?, sent_at = ?, last_error = NULL, "
                   "lease_owner = NULL WHERE id = ?", (status, now_iso(), email_id))


def _retry_later(db, row: dict, error: str, schedule: tuple[int, ...]) -> None:
    """Due again at the schedule's next step, or failed once it is used up."""
    retry = retries.next_attempt(schedule, row["attempts"], utcnow())
    with write_txn(db):
        if retry is None:
            db.execute("UPDATE emails SET status = 'failed', last_error = ?, lease_owner = NULL "
                       "WHERE id = ?", (error, row["id"]))
        else:
            db.execute("UPDATE emails SET next_attempt_at = ?, last_error = ?, "
                       "lease_owner = NULL WHERE id = ?", (iso(retry), error, row["id"]))


def _message(row: dict, from_address: str) -> EmailMessage:
    if not PLAIN_ADDRESS.fullmatch(row["to_address"]):  # a comma would make two recipients
        raise ValueError(f"{row['to_address']!r} is not a plain email address")
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = row["to_address"]
    message["Subject"] = one_line(row["subject"])
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = make_msgid(idstring=row["id"], domain="sellix-lite")
    message.set_content(row["body_text"])
    return message


def _send_smtp(config: EmailConfig, message: EmailMessage) -> str | None:
    """Send one message; the error text, or None on success."""
    try:
        with smtplib.SMTP(config.smtp_host, config.smtp_port,
                          timeout=SMTP_TIMEOUT_SECONDS) as smtp:
            if config.starttls:
                smtp.starttls()
            if config.smtp_user:
                smtp.login(config.smtp_user, config.smtp_password)
            smtp.send_message(message)
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


def _write_eml(outbox_dir: Path, email_id: str, message: EmailMessage) -> None:
    outbox_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = outbox_dir / f".{email_id}.eml"
    with files.open_private(partial) as out:  # delivery emails hold license keys
        out.write(bytes(message))
    partial.replace(outbox_dir / f"{email_id}.eml")
