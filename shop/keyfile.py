"""AES-256 keys from settings, or (development and tests) from a key file made on first use.

Shared by the prescription store and the two-factor secret box; each has its own setting, its own
file and its own wording for what a lost key means.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEY_SIZE = 32


@dataclass(frozen=True)
class KeySource:
    setting: str  # e.g. PRESCRIPTION_ENCRYPTION_KEY
    autocreate_setting: str  # true only in development and testing
    file_name: str  # in the instance folder
    purpose: str  # "prescription documents cannot be encrypted"
    file_label: str  # "prescription key file"
    lost: str  # what an empty file means: "no document can have been encrypted with it"


def decode_key(value: str | bytes, source: str) -> bytes:
    """:raise RuntimeError: not URL-safe base64 of 32 bytes (the message never echoes the value)."""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    text = "".join(text.split())  # tolerate a trailing newline from an env file
    text += "=" * (-len(text) % 4)  # and missing padding
    try:
        key = base64.b64decode(text, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise RuntimeError(
            f"{source} is not URL-safe base64; generate one with "
            "python -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'"
        ) from None
    if len(key) != KEY_SIZE:
        raise RuntimeError(f"{source} must decode to {KEY_SIZE} bytes (AES-256), not {len(key)}")
    return key


def load_key(source: KeySource, config: Mapping[str, Any], instance_path: Path) -> bytes:
    """The configured key, else (when the autocreate setting is true) the instance key file, created
    on first use; of several processes starting at once exactly one creates it."""
    configured = config.get(source.setting)
    if configured:
        return decode_key(configured, source.setting)
    if not config.get(source.autocreate_setting):
        raise RuntimeError(
            f"{source.setting} is not set: {source.purpose}. Set it to the URL-safe base64 of 32 random "
            f"bytes (keep it out of the database and its backups), or set {source.autocreate_setting} "
            "for development."
        )
    path = Path(instance_path) / source.file_name
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    new_key = os.urandom(KEY_SIZE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        return _read_key_file(source, path)
    with os.fdopen(fd, "wb") as file:
        file.write(base64.urlsafe_b64encode(new_key) + b"\n")
        file.flush()
        os.fsync(file.fileno())
    return new_key


def _read_key_file(source: KeySource, path: Path) -> bytes:
    label = f"{source.file_label} {path}"
    # Another process may be between its os.open and its write: wait briefly for the content. The
    # creator ends the file with a newline, so a complete but invalid file fails at once.
    deadline = time.monotonic() + 2.0
    while True:
        content = path.read_bytes()
        try:
            if not content.strip():
                raise RuntimeError(f"{label} is empty (a crash while creating it?); delete it to create a "
                                   f"new one: {source.lost}")
            return decode_key(content, label)
        except RuntimeError:
            if content.endswith(b"\n") or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
