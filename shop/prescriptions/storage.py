"""Private, encrypted storage for prescription documents (protected health information).

Documents never go under static/ and are never served by name. `EncryptedStore` encrypts each
document with AES-256-GCM under an application key kept outside the database, names it with a
random key (never the uploader's filename), binds the ciphertext to that name (AAD) and checks the
plaintext SHA-256 on every read. The raw bytes live in a `Storage` backend: `LocalStorage` (a
private directory) or `S3Storage` (a bucket).

Stored format: b"RX1" + 12-byte nonce + ciphertext||16-byte tag.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Flask

from shop import keyfile

FORMAT_VERSION = b"RX1"
NONCE_SIZE = 12
TAG_SIZE = 16
KEY_SIZE = keyfile.KEY_SIZE
KEY_FILE_NAME = "prescription.key"
EXTENSION_NAME = "prescription_store"
MAX_KEY_LENGTH = 200
# Only these characters: no separators, no dots, so a key can never name anything outside the root.
_KEY_PATTERN = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_KEY_LENGTH}}}")


class StorageError(Exception):
    """A stored object is missing, or the backend failed."""


class InvalidKey(StorageError, ValueError):
    """A key with characters or a length that storage refuses (a bug or a tampered database row)."""


class TamperedFile(StorageError):
    """The stored bytes fail authentication, or the plaintext's SHA-256 is not the recorded one."""


def validate_key(key: str) -> str:
    # fullmatch, not match: "$" would let a trailing newline through.
    if not isinstance(key, str) or not _KEY_PATTERN.fullmatch(key):
        raise InvalidKey(f"storage keys are 1 to {MAX_KEY_LENGTH} characters of A-Z, a-z, 0-9, '_' and '-'")
    return key


class Storage(Protocol):
    """Raw bytes by key. Backends know nothing of encryption."""

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes:
        """Raises StorageError when the key is missing."""
        ...

    def delete(self, key: str) -> None:
        """A missing key is not an error."""
        ...


class LocalStorage:
    """Files in a private directory: dirs 0700, files 0600, written atomically.

    Files sit in a two-character subdirectory (root/ab/abcdef...) so no directory grows huge.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode does not apply to a directory that already existed.
        if self.root.stat().st_mode & 0o077:
            os.chmod(self.root, 0o700)

    def path_for(self, key: str) -> Path:
        validate_key(key)
        return self.root / key[:2] / key

    def put(self, key: str, data: bytes) -> None:
        path = self.path_for(key)
        try:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            # mkstemp creates the file 0600; its ".tmp-" name can never collide with a valid key.
            fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        except OSError as error:
            raise StorageError(f"could not store {key}: {error.strerror}") from error
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            # Readers see the old file or the whole new one, never a half-written one.
            os.replace(tmp_name, path)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise StorageError(f"could not store {key}: {error.strerror}") from error
        _fsync_dir(path.parent)

    def get(self, key: str) -> bytes:
        path = self.path_for(key)
        # O_NOFOLLOW: a symlink planted in the store is never followed out of it.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            raise StorageError(f"no stored object {key}") from None
        except OSError as error:
            raise StorageError(f"could not read {key}: {error.strerror}") from error
        with os.fdopen(fd, "rb") as file:
            return file.read()

    def delete(self, key: str) -> None:
        path = self.path_for(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            raise StorageError(f"could not delete {key}: {error.strerror}") from error


def _fsync_dir(directory: Path) -> None:
    # Makes the rename durable; not possible on every platform, and harmless to skip there.
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class S3Storage:
    """Objects in an S3 bucket (or an S3-compatible service) through a boto3 S3 client."""

    def __init__(self, bucket: str, client: Any, *, server_side_encryption: str | None = None) -> None:
        self.bucket = bucket
        self.client = client
        # Optional extra layer (e.g. "AES256"); our own encryption is what protects the data, and
        # some S3-compatible services refuse the header.
        self.server_side_encryption = server_side_encryption

    def put(self, key: str, data: bytes) -> None:
        validate_key(key)
        extra = {"ServerSideEncryption": self.server_side_encryption} if self.server_side_encryption else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
        except Exception as error:  # botocore raises many unrelated types; callers need one
            raise StorageError(f"could not store {key}: {_describe(error)}") from error

    def get(self, key: str) -> bytes:
        validate_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            return response["Body"].read()
        except Exception as error:
            if _error_code(error) in ("NoSuchKey", "404", "NotFound"):
                raise StorageError(f"no stored object {key}") from None
            raise StorageError(f"could not read {key}: {_describe(error)}") from error

    def delete(self, key: str) -> None:
        validate_key(key)
        try:
            # S3 deletes are idempotent: a missing key is not an error.
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as error:
            raise StorageError(f"could not delete {key}: {_describe(error)}") from error


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _describe(error: Exception) -> str:
    return _error_code(error) or type(error).__name__


@dataclass(frozen=True)
class StoredBlob:
    key: str  # random; never derived from the user's filename
    sha256: str  # hex SHA-256 of the plaintext
    size: int  # plaintext size in bytes


class EncryptedStore:
    """AES-256-GCM over a Storage backend, with the plaintext's SHA-256 checked on every load."""

    def __init__(self, storage: Storage, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise ValueError(f"the prescription encryption key must be {KEY_SIZE} bytes")
        self.storage = storage
        self._aead = AESGCM(key)

    def save(self, data: bytes) -> StoredBlob:
        name = secrets.token_urlsafe(24)
        nonce = os.urandom(NONCE_SIZE)  # random per object; never reused with this key in practice
        # AAD = the name: a blob copied or swapped under another name fails authentication.
        sealed = self._aead.encrypt(nonce, data, name.encode())
        self.storage.put(name, FORMAT_VERSION + nonce + sealed)
        return StoredBlob(key=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data))

    def load(self, key: str, sha256: str) -> bytes:
        blob = self.storage.get(key)  # StorageError (not TamperedFile) when missing
        header = len(FORMAT_VERSION) + NONCE_SIZE
        if len(blob) < header + TAG_SIZE:
            raise TamperedFile(f"stored object {key} is truncated")
        if not blob.startswith(FORMAT_VERSION):
            raise TamperedFile(f"stored object {key} has an unknown format")
        nonce = blob[len(FORMAT_VERSION) : header]
        try:
            data = self._aead.decrypt(nonce, blob[header:], key.encode())
        except InvalidTag:
            raise TamperedFile(f"stored object {key} fails authentication") from None
        # Also catches a database row pointing at another (authentic) object.
        if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), str(sha256).lower()):
            raise TamperedFile(f"stored object {key} does not match its recorded SHA-256")
        return data

    def delete(self, key: str) -> None:
        self.storage.delete(key)


KEY_SOURCE = keyfile.KeySource(
    setting="PRESCRIPTION_ENCRYPTION_KEY", autocreate_setting="PRESCRIPTION_KEY_AUTOCREATE",
    file_name=KEY_FILE_NAME, purpose="prescription documents cannot be encrypted",
    file_label="prescription key file", lost="no document can have been encrypted with it")


def load_key(config: Mapping[str, Any], instance_path: Path) -> bytes:
    """PRESCRIPTION_ENCRYPTION_KEY, else (development and testing only, when
    PRESCRIPTION_KEY_AUTOCREATE is true) a key file in the instance folder, created on first use."""
    return keyfile.load_key(KEY_SOURCE, config, instance_path)


def store_for_app(app: Flask) -> EncryptedStore:
    """The application's EncryptedStore, built from its config once and kept in app.extensions."""
    store = app.extensions.get(EXTENSION_NAME)
    if store is not None:
        return store
    config = app.config
    key = load_key(config, Path(app.instance_path))
    kind = str(config.get("PRESCRIPTION_STORAGE") or "local").strip().lower()
    storage: Storage
    if kind == "local":
        root = Path(config.get("PRESCRIPTION_STORAGE_PATH") or Path(app.instance_path) / "prescriptions")
        if app.static_folder and root.resolve().is_relative_to(Path(app.static_folder).resolve()):
            raise RuntimeError("PRESCRIPTION_STORAGE_PATH must not be inside the static folder")
        storage = LocalStorage(root)
    elif kind == "s3":
        bucket = config.get("PRESCRIPTION_S3_BUCKET")
        if not bucket:
            raise RuntimeError("PRESCRIPTION_STORAGE is s3 but PRESCRIPTION_S3_BUCKET is not set")
        import boto3  # only when S3 is used: importing it is slow

        # Credentials come from the standard AWS environment (variables, profile, instance role).
        client = boto3.client(
            "s3",
            endpoint_url=config.get("PRESCRIPTION_S3_ENDPOINT_URL") or None,
            region_name=config.get("PRESCRIPTION_S3_REGION") or "us-east-1",
        )
        storage = S3Storage(
            bucket,
            client,
            server_side_encryption=config.get("PRESCRIPTION_S3_SERVER_SIDE_ENCRYPTION") or None,
        )
    else:
        raise RuntimeError(f"PRESCRIPTION_STORAGE must be 'local' or 's3', not {kind!r}")
    # setdefault: if two threads build at once, both end up with the same store.
    return app.extensions.setdefault(EXTENSION_NAME, EncryptedStore(storage, key))
