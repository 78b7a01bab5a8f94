from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from rewardops_trainer.storage import (
    ObjectNotFound,
    StorageError,
    get_dir,
    open_store,
    put_dir,
)
from tests.support.s3server import S3Server


def test_s3_round_trip_list_stream_and_atomic_write(bucket: str, tmp_path: Path) -> None:
    store = open_store(f"s3://{bucket}/telemetry")
    store.write_bytes("day=1/a.jsonl", b'{"a": 1}\n')
    store.write_bytes("day=1/b.jsonl.gz", gzip.compress(b'{"b": 2}\n'))
    store.write_bytes("day=2/c.jsonl", b"x" * 10)

    listed = list(store.list("day=1/"))
    assert [info.key for info in listed] == ["day=1/a.jsonl", "day=1/b.jsonl.gz"]
    assert listed[0].size == 9
    assert all(info.etag for info in listed)
    assert [info.key for info in store.list()] == [
        "day=1/a.jsonl",
        "day=1/b.jsonl.gz",
        "day=2/c.jsonl",
    ]
    with store.open_read("day=1/b.jsonl.gz") as stream, gzip.open(stream) as lines:
        assert lines.read() == b'{"b": 2}\n'
    assert store.exists("day=2/c.jsonl")
    assert not store.exists("day=2/missing")
    # No temporary key is left behind by the atomic write.
    root = open_store(f"s3://{bucket}")
    assert all(".tmp-" not in info.key for info in root.list())


def test_s3_directory_copy_and_missing_key(bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "model"
    (source / "sub").mkdir(parents=True)
    (source / "config.json").write_text("{}")
    (source / "sub" / "weights.bin").write_bytes(b"\x00" * 2048)
    store = open_store(f"s3://{bucket}")
    put_dir(store, "runs/r1/model", source)
    assert get_dir(store, "runs/r1/model", tmp_path / "copy") == 2
    assert (tmp_path / "copy" / "sub" / "weights.bin").read_bytes() == b"\x00" * 2048
    with pytest.raises(ObjectNotFound), store.open_read("runs/r1/none"):
        pass


def test_s3_wrong_credentials_is_a_storage_error(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_server.make_bucket("creds")
    monkeypatch.setenv("S3_ENDPOINT", s3_server.endpoint)
    monkeypatch.setenv("S3_SECURE", "false")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "wrong")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(StorageError):
        list(open_store("s3://creds").list())


def test_uri_with_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="credentials never go in a URI"):
        open_store("s3://key:secret@bucket/x")


def test_file_store_round_trip(tmp_path: Path) -> None:
    store = open_store((tmp_path / "root").as_uri())
    store.write_bytes("a/b.txt", b"hello")
    assert [i.key for i in store.list()] == ["a/b.txt"]
    with store.open_read("a/b.txt") as stream:
        assert stream.read() == b"hello"
    with pytest.raises(ValueError, match="leaves the store root"):
        store.write_bytes("../escape", b"x")
