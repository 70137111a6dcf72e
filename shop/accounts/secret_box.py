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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Flask, current_app

from shop import keyfile

PREFIX = "v1:"
NONCE_SIZE = 12
TAG_SIZE = 16
KEY_SIZE = keyfile.KEY_SIZE
KEY_FILE_NAME = "account-secrets.key"
SETTING = "ACCOUNT_SECRETS_KEY"
EXTENSION_NAME = "account_secret_box"


class UnreadableSecret(ValueError):
    """The stored value does not open: tampered, moved from another user's row, sealed under another
    key, or not sealed at all."""


TOTP_COLUMN = "user_account.totp_secret"


def _associated_data(user_id: int, column: str = TOTP_COLUMN) -> bytes:
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        # A user not yet flushed has no id; sealing then would bind the secret to nothing.
        raise ValueError("a secret is sealed for a saved user (flush first to get an id)")
    return f"{column}:{user_id}".encode()


def seal_with(key: bytes, user_id: int, secret: str, column: str = TOTP_COLUMN) -> str:
    nonce = os.urandom(NONCE_SIZE)  # random per value: no counter to keep, 2^-96 collision odds
    sealed = AESGCM(key).encrypt(nonce, secret.encode(), _associated_data(user_id, column))
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def open_with(key: bytes, user_id: int, stored: str, column: str = TOTP_COLUMN) -> str:
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
        plain = AESGCM(key).decrypt(blob[:NONCE_SIZE], blob[NONCE_SIZE:], _associated_data(user_id, column))
    except InvalidTag:
        raise UnreadableSecret(f"the two-factor secret of user {user_id} fails authentication") from None
    return plain.decode()


def seal(user_id: int, secret: str, column: str = TOTP_COLUMN) -> str:
    """The value to store in `User.totp_secret` (or the other `column`) for this user."""
    return seal_with(app_key(current_app), user_id, secret, column)


def open_(user_id: int, stored: str, column: str = TOTP_COLUMN) -> str:
    """The TOTP secret from `User.totp_secret` (or the other `column`). :raise UnreadableSecret:"""
    return open_with(app_key(current_app), user_id, stored, column)


def app_key(app: Flask) -> bytes:
    """The application's key, loaded from its config once and kept in app.extensions."""
    key = app.extensions.get(EXTENSION_NAME)
    if key is None:
        # setdefault: threads loading at once all keep the first key (they are equal anyway).
        key = app.extensions.setdefault(EXTENSION_NAME, load_key(app.config, Path(app.instance_path)))
    return key


KEY_SOURCE = keyfile.KeySource(
    setting=SETTING, autocreate_setting="ACCOUNT_SECRETS_KEY_AUTOCREATE", file_name=KEY_FILE_NAME,
    purpose="two-factor secrets cannot be encrypted or read", file_label="account secrets key file",
    lost="no two-factor secret can have been sealed with it")
decode_key = keyfile.decode_key


def load_key(config: Mapping[str, Any], instance_path: Path) -> bytes:
    """ACCOUNT_SECRETS_KEY, else (development and testing only, when ACCOUNT_SECRETS_KEY_AUTOCREATE is
    true) a key file in the instance folder, created on first use. Also used by migration 0007."""
    return keyfile.load_key(KEY_SOURCE, config, instance_path)

