"""Encryption at rest for the two-factor (TOTP) shared secret, so a copy of the database alone cannot
produce staff sign-in codes.

AES-256-GCM under ACCOUNT_SECRETS_KEY, a key of its own rather than one derived from the prescription
key: it can be kept from people independently of the documents' key, and a leak of one does not
open the other. There is no rotation yet: the stored form names no key, so changing the key makes
every stored secret unreadable (staff would enrol again); a "v2:" form with a key id would allow it.
Development and tests create `account-secrets.key` in the instance folder on first use
(ACCOUNT_SECRETS_KEY_AUTOCREATE); production refuses to start without the setting.

Stored form: "v1:" + urlsafe-b64(12-byte nonce || ciphertext || 16-byte tag). The associated data
names the column and the user id, so a value copied into another user's row does not open.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Flask, current_app

PREFIX = "v1:"
NONCE_SIZE = 12
TAG_SIZE = 16
KEY_SIZE = 32
KEY_FILE_NAME = "account-secrets.key"
SETTING = "ACCOUNT_SECRETS_KEY"
EXTENSION_NAME = "account_secret_box"


class UnreadableSecret(ValueError):
    """The stored value does not open: tampered, moved from another user's row, sealed under another
    key, or not sealed at all."""


def _associated_data(user_id: int) -> bytes:
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        # A user not yet flushed has no id; sealing then would bind the secret to nothing.
        raise ValueError("a secret is sealed for a saved user (flush first to get an id)")
    return f"user_account.totp_secret:{user_id}".encode()


def seal_with(key: bytes, user_id: int, secret: str) -> str:
    nonce = os.urandom(NONCE_SIZE)  # random per value: no counter to keep, 2^-96 collision odds
    sealed = AESGCM(key).encrypt(nonce, secret.encode(), _associated_data(user_id))
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def open_with(key: bytes, user_id: int, stored: str) -> str:
    """:raise UnreadableSecret: the value is not one sealed with `key` for `user_id`."""
    if not isinstance(stored, str) or not stored.startswith(PREFIX):
        raise UnreadableSecret(f"the two-factor secret of user {user_id} is not in a known sealed format")
    try:
        blob = base64.urlsafe_b64decode(stored[len(PREFIX):].encode("ascii"))
    except (binascii.Error, ValueError):
        raise UnreadableSecret(f"the two-factor secret of user {user_id} is not valid base64") from None
    if len(blob) < NONCE_SIZE + TAG_SIZE:
        raise UnreadableSecret(f"the two-factor secret of user {user_id} is truncated")
    try:
        plain = AESGCM(key).decrypt(blob[:NONCE_SIZE], blob[NONCE_SIZE:], _associated_data(user_id))
    except InvalidTag:
        raise UnreadableSecret(f"the two-factor secret of user {user_id} fails authentication") from None
    return plain.decode()


def seal(user_id: int, secret: str) -> str:
    """The value to store in `User.totp_secret` for this user."""
    return seal_with(app_key(current_app), user_id, secret)


def open_(user_id: int, stored: str) -> str:
    """The TOTP secret from `User.totp_secret`. :raise UnreadableSecret:"""
    return open_with(app_key(current_app), user_id, stored)


def app_key(app: Flask) -> bytes:
    """The application's key, loaded from its config once and kept in app.extensions."""
    key = app.extensions.get(EXTENSION_NAME)
    if key is None:
        # setdefault: threads loading at once all keep the first key (they are equal anyway).
        key = app.extensions.setdefault(EXTENSION_NAME, load_key(app.config, Path(app.instance_path)))
    return key


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


def load_key(config: Mapping[str, Any], instance_path: Path) -> bytes:
    """ACCOUNT_SECRETS_KEY, else (development and testing only, when ACCOUNT_SECRETS_KEY_AUTOCREATE is
    true) a key file in the instance folder, created on first use. Also used by migration 0007."""
    configured = config.get(SETTING)
    if configured:
        return decode_key(configured, SETTING)
    if not config.get("ACCOUNT_SECRETS_KEY_AUTOCREATE"):
        raise RuntimeError(
            f"{SETTING} is not set: two-factor secrets cannot be encrypted or read. Set it to the "
            "URL-safe base64 of 32 random bytes (keep it out of the database and its backups), or set "
            "ACCOUNT_SECRETS_KEY_AUTOCREATE for development."
        )
    path = Path(instance_path) / KEY_FILE_NAME
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    new_key = os.urandom(KEY_SIZE)
    try:
        # O_EXCL: of several processes starting at once exactly one creates the key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        return _read_key_file(path)
    with os.fdopen(fd, "wb") as file:
        file.write(base64.urlsafe_b64encode(new_key) + b"\n")
        file.flush()
        os.fsync(file.fileno())
    return new_key


def _read_key_file(path: Path) -> bytes:
    source = f"account secrets key file {path}"
    # Another process may be between its os.open and its write: wait briefly for the content. The
    # creator ends the file with a newline, so a complete but invalid file fails at once.
    deadline = time.monotonic() + 2.0
    while True:
        content = path.read_bytes()
        try:
            if not content.strip():
                raise RuntimeError(
                    f"{source} is empty (a crash while creating it?); delete it to create a new "
                    "one: no two-factor secret can have been sealed with it"
                )
            return decode_key(content, source)
        except RuntimeError:
            if content.endswith(b"\n") or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
