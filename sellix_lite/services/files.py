"""Files delivered by file_download products, stored under the data folder.

Files are content-addressed (`files/<product id>/<sha256>`): an upload streams to a
temporary file, is synced and renamed into place, and only then does the product point to
it. A crash at any step leaves the product on its old file, never on half a new one; the
previous file is removed once nothing points to it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import PayloadTooLarge

CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True)
class StoredFile:
    path: Path
    size: int
    sha256: str


def store(files_dir: Path, product_id: str, source: BinaryIO, max_bytes: int) -> StoredFile:
    """Stream `source` into the product's folder; 413 past `max_bytes` (nothing kept)."""
    folder = files_dir / product_id
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = folder / f".upload-{secrets.token_hex(8)}"
    digest, size = hashlib.sha256(), 0
    try:
        with open_private(partial) as out:
            while chunk := source.read(CHUNK_BYTES):
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"the file is larger than the limit of {max_bytes} bytes")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        final = folder / digest.hexdigest()
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _sync_dir(folder)
    return StoredFile(final, size, digest.hexdigest())


def open_private(path: Path) -> BinaryIO:
    """Open `path` for writing as a file only the shop's user can read (0600), whatever
    the process's umask: what is written here is paid-for goods or holds license keys."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def path_of(files_dir: Path, product_id: str, sha256: str) -> Path:
    """Where a product's stored file lives."""
    return files_dir / product_id / sha256


def remove_others(files_dir: Path, product_id: str, keep_sha256: str | None) -> None:
    """Delete the product's files other than the current one."""
    for path in (files_dir / product_id).iterdir():
        if path.name != keep_sha256 and not path.name.startswith(".upload-"):
            path.unlink(missing_ok=True)


def _sync_dir(folder: Path) -> None:
    """Make the rename durable: a directory entry is only safe once the directory is synced."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
