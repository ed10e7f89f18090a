"""Product images: PNG, JPEG or WebP, recognised by their first bytes, at most 5 MB.

Stored content-addressed beside the product files (`files/media/<sha256>`), through the
same streaming, synced write, and served at `/media/<sha256>.<type>`, a URL that changes
with the content and so may be cached for ever.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO

import sqlite_utils

from ..errors import PayloadTooLarge, Unprocessable
from . import files

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MEDIA = "media"  # the folder under files_dir; product ids never take this name
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
SHA256 = re.compile(r"[0-9a-f]{64}")


def kind_of(head: bytes) -> str | None:
    """The image type that the file's first 12 bytes announce, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def store(files_dir: Path, source: BinaryIO) -> tuple[str, str]:
    """Stream an uploaded image into the media folder: its sha256 and type, or 422."""
    try:
        stored = files.store(files_dir, MEDIA, source, MAX_IMAGE_BYTES)
    except PayloadTooLarge:
        raise Unprocessable(errors={"image": "is larger than 5 MB"}) from None
    with stored.path.open("rb") as image:
        kind = kind_of(image.read(12))
    if kind is None:
        stored.path.unlink(missing_ok=True)
        raise Unprocessable(errors={"image": "is not a PNG, JPEG or WebP image"})
    return stored.sha256, kind


def path_of(files_dir: Path, sha256: str) -> Path:
    return files.path_of(files_dir, MEDIA, sha256)


def url_path(sha256: str, kind: str) -> str:
    return f"/media/{sha256}.{kind}"


def remove_unused(db: sqlite_utils.Database, files_dir: Path, sha256: str) -> None:
    """Delete the stored image unless a product (of either mode) still shows it."""
    if db.execute("SELECT 1 FROM products WHERE image_sha256 = ? LIMIT 1",
                                     (sha256,)).fetchone():
        return
    path_of(files_dir, sha256).unlink(missing_ok=True)
