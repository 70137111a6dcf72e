"""Encrypted prescription storage: local files and S3, tampering, key handling, app wiring."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from flask import Flask
from moto import mock_aws

from shop.prescriptions.storage import (
    EncryptedStore,
    InvalidKey,
    LocalStorage,
    S3Storage,
    StorageError,
    StoredBlob,
    TamperedFile,
    load_key,
    store_for_app,
)

BUCKET = "prescriptions-test"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
# 1 KB that appears nowhere by chance: a repeated phrase would let a single match pass unnoticed.
MARKER = hashlib.shake_256(b"prescription marker").digest(1024)
PNG_LIKE = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + MARKER + b"Patient: Jane Doe; Rx: amoxicillin" + b"IEND"
JPEG_LIKE = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + MARKER + b"\xff\xd9"
HEADER = len(b"RX1") + 12


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def b64(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store")


@pytest.fixture
def store(local: LocalStorage) -> EncryptedStore:
    return EncryptedStore(local, KEY)


@pytest.fixture
def s3_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    # The one mock in this file: S3 cannot run on this machine, so moto stands in for it. Fake
    # credentials make sure nothing could ever reach a real account.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


# Backends ------------------------------------------------------------------------------------------


def test_local_storage_round_trip(local: LocalStorage) -> None:
    local.put("abc_DEF-123", b"first")
    local.put("abc_DEF-123", b"second")  # replaces
    assert local.get("abc_DEF-123") == b"second"
    local.delete("abc_DEF-123")
    with pytest.raises(StorageError):
        local.get("abc_DEF-123")
    local.delete("abc_DEF-123")  # missing is fine
    # No temporary files left behind by the atomic writes.
    assert not [p for p in local.root.rglob("*") if p.is_file()]


def test_encrypted_round_trip_on_local_storage(store: EncryptedStore) -> None:
    blob = store.save(PNG_LIKE)
    assert blob == StoredBlob(key=blob.key, sha256=hashlib.sha256(PNG_LIKE).hexdigest(), size=len(PNG_LIKE))
    assert store.load(blob.key, blob.sha256) == PNG_LIKE
    assert store.load(blob.key, blob.sha256.upper()) == PNG_LIKE
    empty = store.save(b"")
    assert store.load(empty.key, empty.sha256) == b""
    store.delete(blob.key)
    with pytest.raises(StorageError) as missing:
        store.load(blob.key, blob.sha256)
    assert not isinstance(missing.value, TamperedFile)  # missing is not tampering


def test_s3_round_trip(s3_client: object) -> None:
    s3 = S3Storage(BUCKET, s3_client)
    s3.put("raw-key", b"raw bytes")
    assert s3.get("raw-key") == b"raw bytes"
    s3.delete("raw-key")
    with pytest.raises(StorageError):
        s3.get("raw-key")
    s3.delete("raw-key")  # missing is fine

    store = EncryptedStore(S3Storage(BUCKET, s3_client, server_side_encryption="AES256"), KEY)
    blob = store.save(JPEG_LIKE)
    assert store.load(blob.key, blob.sha256) == JPEG_LIKE
    stored = s3_client.get_object(Bucket=BUCKET, Key=blob.key)
    assert stored["ServerSideEncryption"] == "AES256"
    body = stored["Body"].read()
    assert body.startswith(b"RX1") and MARKER[:64] not in body
    store.delete(blob.key)
    assert s3_client.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


def test_s3_backend_failure_is_a_storage_error(s3_client: object) -> None:
    with pytest.raises(StorageError):
        S3Storage("no-such-bucket", s3_client).put("key", b"data")


# What is on disk -----------------------------------------------------------------------------------


def test_bytes_on_disk_are_not_the_plaintext(store: EncryptedStore, local: LocalStorage) -> None:
    for plaintext in (PNG_LIKE, JPEG_LIKE):
        blob = store.save(plaintext)
        on_disk = local.path_for(blob.key).read_bytes()
        assert on_disk.startswith(b"RX1")
        assert len(on_disk) == HEADER + len(plaintext) + 16
        # No 8-byte window of the marker survives (a chance match is about 1 in 10^13).
        windows = {MARKER[i : i + 8] for i in range(len(MARKER) - 7)}
        assert not any(on_disk[i : i + 8] in windows for i in range(len(on_disk) - 7))
        for visible in (b"Jane Doe", b"amoxicillin", b"PNG", b"JFIF"):
            assert visible not in on_disk


def test_stored_name_is_random_and_files_are_private(store: EncryptedStore, local: LocalStorage) -> None:
    user_filename = "jane-doe_prescription_2024.png"  # what the browser sent; the store never sees it
    first, second = store.save(PNG_LIKE), store.save(PNG_LIKE)
    assert first.key != second.key and len(first.key) >= 32
    for blob in (first, second):
        path = local.path_for(blob.key)
        assert path.name == blob.key
        for part in ("jane", "doe", "prescription", "2024", ".png", "png"):
            assert part not in str(path.relative_to(local.root)).lower()
        assert mode(path) == 0o600
        assert mode(path.parent) == 0o700
    assert mode(local.root) == 0o700
    assert user_filename not in {p.name for p in local.root.rglob("*")}
    # Same plaintext, different ciphertext: fresh nonce, and the name is bound in.
    assert local.get(first.key) != local.get(second.key)


def test_existing_open_root_is_made_private(tmp_path: Path) -> None:
    root = tmp_path / "open"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    LocalStorage(root)
    assert mode(root) == 0o700


# Tampering -----------------------------------------------------------------------------------------


def test_flipped_byte_is_tampering(store: EncryptedStore, local: LocalStorage) -> None:
    blob = store.save(PNG_LIKE)
    path = local.path_for(blob.key)
    original = path.read_bytes()
    for index in (HEADER + 5, 5, len(original) - 1):  # ciphertext, nonce, tag
        damaged = bytearray(original)
        damaged[index] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(TamperedFile):
            store.load(blob.key, blob.sha256)
    path.write_bytes(original)
    assert store.load(blob.key, blob.sha256) == PNG_LIKE


@pytest.mark.parametrize("length", [0, 2, HEADER, HEADER + 15, -1])
def test_truncated_file_is_tampering(store: EncryptedStore, local: LocalStorage, length: int) -> None:
    blob = store.save(PNG_LIKE)
    path = local.path_for(blob.key)
    path.write_bytes(path.read_bytes()[:length])
    with pytest.raises(TamperedFile):
        store.load(blob.key, blob.sha256)


def test_wrong_version_prefix_is_tampering(store: EncryptedStore, local: LocalStorage) -> None:
    blob = store.save(PNG_LIKE)
    path = local.path_for(blob.key)
    path.write_bytes(b"RX2" + path.read_bytes()[3:])
    with pytest.raises(TamperedFile):
        store.load(blob.key, blob.sha256)


def test_swapped_blobs_fail_authentication(store: EncryptedStore, local: LocalStorage) -> None:
    # Both ciphertexts are authentic, but each is bound (AAD) to its own name.
    first, second = store.save(PNG_LIKE), store.save(JPEG_LIKE)
    first_path, second_path = local.path_for(first.key), local.path_for(second.key)
    first_bytes, second_bytes = first_path.read_bytes(), second_path.read_bytes()
    first_path.write_bytes(second_bytes)
    second_path.write_bytes(first_bytes)
    with pytest.raises(TamperedFile, match="authentication"):
        store.load(first.key, second.sha256)
    with pytest.raises(TamperedFile, match="authentication"):
        store.load(second.key, first.sha256)


def test_wrong_sha256_is_tampering(store: EncryptedStore) -> None:
    blob = store.save(PNG_LIKE)
    other = store.save(JPEG_LIKE)
    for wrong in (other.sha256, "0" * 64, "", "not hex"):
        with pytest.raises(TamperedFile, match="SHA-256"):
            store.load(blob.key, wrong)


def test_other_key_cannot_decrypt(store: EncryptedStore, local: LocalStorage) -> None:
    blob = store.save(PNG_LIKE)
    with pytest.raises(TamperedFile):
        EncryptedStore(local, OTHER_KEY).load(blob.key, blob.sha256)


@pytest.mark.parametrize("bad", [b"short", "x" * 32, bytes(31), bytes(33)])
def test_store_refuses_a_bad_key(local: LocalStorage, bad: object) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        EncryptedStore(local, bad)  # type: ignore[arg-type]


# Key names -----------------------------------------------------------------------------------------

BAD_NAMES = [
    "../escape",
    "../../etc/passwd",
    "/etc/passwd",
    "a/b",
    "a\\b",
    "..\\escape",
    "..",
    ".",
    ".hidden",
    "",
    "x" * 201,
    "a b",
    "a\x00b",
    "key\n",
    "caf\u00e9",
    "%2e%2e",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_local_storage_refuses_bad_keys(tmp_path: Path, name: str) -> None:
    local = LocalStorage(tmp_path / "store")
    with pytest.raises(InvalidKey):
        local.put(name, b"data")
    with pytest.raises(InvalidKey):
        local.get(name)
    with pytest.raises(InvalidKey):
        local.delete(name)
    assert isinstance(InvalidKey(), StorageError)
    # Nothing was written anywhere, inside the root or beside it.
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["store"]


def test_longest_allowed_key(local: LocalStorage) -> None:
    local.put("k" * 200, b"data")
    assert local.get("k" * 200) == b"data"


@pytest.mark.parametrize("name", ["../escape", "a/b", ""])
def test_s3_storage_refuses_bad_keys(s3_client: object, name: str) -> None:
    with pytest.raises(InvalidKey):
        S3Storage(BUCKET, s3_client).put(name, b"data")


def test_local_storage_does_not_follow_symlinks(local: LocalStorage, tmp_path: Path) -> None:
    secret = tmp_path / "outside.txt"
    secret.write_bytes(b"outside the store")
    link = local.path_for("planted")
    link.parent.mkdir(mode=0o700)
    link.symlink_to(secret)
    with pytest.raises(StorageError):
        local.get("planted")


# load_key ------------------------------------------------------------------------------------------


def test_key_from_config_value(tmp_path: Path) -> None:
    assert load_key({"PRESCRIPTION_ENCRYPTION_KEY": b64(KEY)}, tmp_path) == KEY
    # Tolerates what env files do: a trailing newline, missing padding.
    assert load_key({"PRESCRIPTION_ENCRYPTION_KEY": b64(KEY).rstrip("=") + "\n"}, tmp_path) == KEY
    # The configured key wins over autocreate, and no key file appears.
    config = {"PRESCRIPTION_ENCRYPTION_KEY": b64(OTHER_KEY), "PRESCRIPTION_KEY_AUTOCREATE": True}
    assert load_key(config, tmp_path) == OTHER_KEY
    assert not (tmp_path / "prescription.key").exists()


def test_autocreated_key_file(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    config = {"PRESCRIPTION_KEY_AUTOCREATE": True}
    key = load_key(config, instance)
    path = instance / "prescription.key"
    assert len(key) == 32
    assert mode(path) == 0o600
    content = path.read_bytes()
    assert load_key(config, instance) == key
    assert path.read_bytes() == content  # not rewritten
    assert load_key({"PRESCRIPTION_KEY_AUTOCREATE": True}, tmp_path / "elsewhere") != key


def test_autocreate_race_gives_everyone_the_same_key(tmp_path: Path) -> None:
    results: list[bytes] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        results.append(load_key({"PRESCRIPTION_KEY_AUTOCREATE": True}, tmp_path))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1


@pytest.mark.parametrize(
    "config", [{}, {"PRESCRIPTION_ENCRYPTION_KEY": ""}, {"PRESCRIPTION_KEY_AUTOCREATE": False}]
)
def test_no_key_is_refused(tmp_path: Path, config: dict[str, object]) -> None:
    with pytest.raises(RuntimeError, match="PRESCRIPTION_ENCRYPTION_KEY"):
        load_key(config, tmp_path)
    assert not (tmp_path / "prescription.key").exists()


@pytest.mark.parametrize(
    "value", [b64(bytes(16)), b64(bytes(31)), b64(bytes(33)), b64(bytes(64)), "not base64!", "A"]
)
def test_bad_configured_key_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(RuntimeError, match="PRESCRIPTION_ENCRYPTION_KEY") as refused:
        load_key({"PRESCRIPTION_ENCRYPTION_KEY": value}, tmp_path)
    if len(value) > 8:
        assert value not in str(refused.value)  # the message never echoes key material


def test_bad_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "prescription.key").write_text(b64(bytes(16)) + "\n")
    with pytest.raises(RuntimeError, match="32 bytes"):
        load_key({"PRESCRIPTION_KEY_AUTOCREATE": True}, tmp_path)


# store_for_app -------------------------------------------------------------------------------------


def bare_app(tmp_path: Path, **config: object) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update({"PRESCRIPTION_ENCRYPTION_KEY": b64(KEY), **config})
    return app


def test_store_for_app_defaults_to_local(tmp_path: Path) -> None:
    app = bare_app(tmp_path)
    store = store_for_app(app)
    assert isinstance(store.storage, LocalStorage)
    assert store.storage.root == tmp_path / "instance" / "prescriptions"
    assert store_for_app(app) is store is app.extensions["prescription_store"]
    blob = store.save(PNG_LIKE)
    assert EncryptedStore(LocalStorage(store.storage.root), KEY).load(blob.key, blob.sha256) == PNG_LIKE


def test_store_for_app_local_path(tmp_path: Path) -> None:
    app = bare_app(tmp_path, PRESCRIPTION_STORAGE="local", PRESCRIPTION_STORAGE_PATH=str(tmp_path / "rx"))
    store = store_for_app(app)
    assert isinstance(store.storage, LocalStorage) and store.storage.root == tmp_path / "rx"


def test_store_for_app_s3(tmp_path: Path, s3_client: object) -> None:
    app = bare_app(tmp_path, PRESCRIPTION_STORAGE="s3", PRESCRIPTION_S3_BUCKET=BUCKET)
    store = store_for_app(app)
    assert isinstance(store.storage, S3Storage) and store.storage.bucket == BUCKET
    blob = store.save(JPEG_LIKE)
    assert store.load(blob.key, blob.sha256) == JPEG_LIKE
    assert s3_client.head_object(Bucket=BUCKET, Key=blob.key)["ContentLength"] == HEADER + len(JPEG_LIKE) + 16
    assert not (tmp_path / "instance" / "prescriptions").exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"PRESCRIPTION_STORAGE": "s3"}, "PRESCRIPTION_S3_BUCKET"),
        ({"PRESCRIPTION_STORAGE": "ftp"}, "PRESCRIPTION_STORAGE"),
        ({"PRESCRIPTION_ENCRYPTION_KEY": None}, "PRESCRIPTION_ENCRYPTION_KEY"),
    ],
)
def test_store_for_app_refuses_bad_config(tmp_path: Path, config: dict[str, object], message: str) -> None:
    app = bare_app(tmp_path, **config)
    with pytest.raises(RuntimeError, match=message):
        store_for_app(app)
    assert "prescription_store" not in app.extensions


def test_store_for_app_refuses_static_folder(tmp_path: Path) -> None:
    app = bare_app(tmp_path)
    app.static_folder = str(tmp_path / "static")
    app.config["PRESCRIPTION_STORAGE_PATH"] = str(tmp_path / "static" / "rx")
    with pytest.raises(RuntimeError, match="static"):
        store_for_app(app)


def test_empty_key_file_is_refused_after_a_short_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An empty file may be another process between creating and writing it; left empty, it is refused.
    (tmp_path / "prescription.key").write_bytes(b"")
    clock = itertools.count(step=1.0)  # each look at the clock is a second later: no real wait
    monkeypatch.setattr("shop.keyfile.time.monotonic", lambda: next(clock))
    with pytest.raises(RuntimeError, match="empty"):
        load_key({"PRESCRIPTION_KEY_AUTOCREATE": True}, tmp_path)


def test_key_file_written_while_waiting_is_read(tmp_path: Path) -> None:
    path = tmp_path / "prescription.key"
    path.write_bytes(b"")  # created by "another process" that has not written yet
    timer = threading.Timer(0.05, path.write_text, args=(b64(KEY) + "\n",))
    timer.start()
    try:
        assert load_key({"PRESCRIPTION_KEY_AUTOCREATE": True}, tmp_path) == KEY
    finally:
        timer.join()
