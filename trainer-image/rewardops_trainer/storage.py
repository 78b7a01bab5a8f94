"""Object storage: ``s3://bucket/prefix`` through the minio client, ``file:///path`` on disk.

Both stores are rooted at a URI and take keys relative to it. Reads stream; writes are atomic
(a temporary key or file first, then the final name), so a reader never sees half an object.
The endpoint, TLS and credentials come from :class:`StorageSettings` and the environment,
never from the URI: ``S3_ENDPOINT``, ``S3_SECURE``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import unquote, urlparse

from rewardops_trainer.contract import StorageSettings


class StorageError(Exception):
    """The store could not be reached or refused the request; usually worth a retry."""


class ObjectNotFound(StorageError):
    """The key does not exist."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str


class ObjectStore(Protocol):
    uri: str

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``prefix``, sorted by key."""
        ...

    def open_read(self, key: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """A binary stream of the object; never loads it whole."""
        ...

    def write_bytes(self, key: str, data: bytes) -> None: ...

    def put_file(self, key: str, path: Path) -> None: ...

    def get_file(self, key: str, path: Path) -> None: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...


def join_uri(uri: str, *keys: str) -> str:
    parts = [uri.rstrip("/"), *(k.strip("/") for k in keys if k.strip("/"))]
    return "/".join(parts)


#: An access key and secret key handed in explicitly (e.g. read from a Secret by the operator).
Credentials = tuple[str | None, str | None]


def open_store(
    uri: str, settings: StorageSettings | None = None, *, credentials: Credentials | None = None
) -> ObjectStore:
    """The store rooted at ``uri`` (``s3://bucket[/prefix]``, ``file:///path`` or a plain path).

    S3 credentials come from ``credentials`` when given, else from the environment.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"{uri!r}: an s3:// URI needs a bucket")
        if parsed.username or parsed.password:
            raise ValueError(f"{uri!r}: credentials never go in a URI; use the Secret reference")
        return S3Store(uri, settings or StorageSettings(), credentials)
    if parsed.scheme in ("file", ""):
        return FileStore(uri)
    raise ValueError(f"{uri!r}: unsupported scheme {parsed.scheme!r} (use s3:// or file://)")


def local_path(uri: str) -> Path:
    """The filesystem path of a ``file://`` URI or a plain path."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "":
        return Path(uri)
    raise ValueError(f"{uri!r} is not a local path")


def put_dir(store: ObjectStore, prefix: str, directory: Path) -> None:
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        store.put_file(join_uri(prefix, path.relative_to(directory).as_posix()), path)


def get_dir(store: ObjectStore, prefix: str, directory: Path) -> int:
    """Copy every object under ``prefix`` into ``directory``; returns how many."""
    count = 0
    base = prefix.strip("/")
    for info in store.list(base + "/" if base else ""):
        relative = info.key[len(base) :].lstrip("/") if base else info.key
        store.get_file(info.key, directory / relative)
        count += 1
    return count


class FileStore:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.root = local_path(uri)

    def _path(self, key: str) -> Path:
        path = (self.root / key.lstrip("/")).resolve() if key else self.root.resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key {key!r} leaves the store root")
        return path

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if not self.root.exists():
            return
        root = self.root.resolve()
        paths = sorted(p for p in root.rglob("*") if p.is_file() and ".tmp-" not in p.name)
        for path in paths:
            key = path.relative_to(root).as_posix()
            if key.startswith(prefix):
                stat = path.stat()
                yield ObjectInfo(key, stat.st_size, f"{stat.st_mtime_ns:x}-{stat.st_size:x}")

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[IO[bytes]]:
        path = self._path(key)
        try:
            stream = path.open("rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"{join_uri(self.uri, key)} does not exist") from None
        with stream:
            yield stream

    def _atomic_target(self, key: str) -> tuple[Path, Path]:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")

    def write_bytes(self, key: str, data: bytes) -> None:
        path, tmp = self._atomic_target(key)
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def put_file(self, key: str, path: Path) -> None:
        target, tmp = self._atomic_target(key)
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)

    def get_file(self, key: str, path: Path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise ObjectNotFound(f"{join_uri(self.uri, key)} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3Store:
    def __init__(
        self, uri: str, settings: StorageSettings, credentials: Credentials | None = None
    ) -> None:
        from minio import Minio

        parsed = urlparse(uri)
        self.uri = uri
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        endpoint = settings.endpoint or os.environ.get("S3_ENDPOINT")
        if not endpoint:
            raise ValueError(
                f"{uri!r}: no S3 endpoint; set storage.endpoint in the config or S3_ENDPOINT"
            )
        secure = settings.secure
        if "S3_SECURE" in os.environ and settings.endpoint is None:
            secure = os.environ["S3_SECURE"].lower() in ("1", "true", "yes")
        if credentials is None:
            credentials = (
                os.environ.get("AWS_ACCESS_KEY_ID"),
                os.environ.get("AWS_SECRET_ACCESS_KEY"),
            )
        self.client = Minio(
            endpoint,
            access_key=credentials[0],
            secret_key=credentials[1],
            region=settings.region or os.environ.get("AWS_REGION"),
            secure=secure,
        )

    def _key(self, key: str) -> str:
        return join_uri(self.prefix, key) if self.prefix else key.strip("/")

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        from minio.error import InvalidResponseError, MinioException, S3Error

        where = join_uri(self.uri, key)
        try:
            yield
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchBucket"):
                raise ObjectNotFound(f"{where}: {error.code}") from None
            raise StorageError(f"{where}: {error.code}: {error.message}") from error
        except InvalidResponseError as error:
            # Some S3 servers send error bodies the client cannot parse; the status still speaks.
            if "<Code>NoSuchKey</Code>" in str(error) or "Response code: 404" in str(error):
                raise ObjectNotFound(f"{where}: not found") from None
            raise StorageError(f"{where}: {error}") from error
        except MinioException as error:
            raise StorageError(f"{where}: {error}") from error
        except OSError as error:  # urllib3 connection errors derive from OSError
            raise StorageError(f"{join_uri(self.uri, key)}: {error}") from error

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full = self._key(prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        if prefix.endswith("/") and not full.endswith("/"):
            full += "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        with self._errors(prefix):
            objects = self.client.list_objects(self.bucket, prefix=full, recursive=True)
            found = [
                ObjectInfo(obj.object_name[strip:], obj.size or 0, (obj.etag or "").strip('"'))
                for obj in objects
                if obj.object_name and ".tmp-" not in obj.object_name
            ]
        yield from sorted(found, key=lambda info: info.key)

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[IO[bytes]]:
        with self._errors(key):
            response = self.client.get_object(self.bucket, self._key(key))
        try:
            yield response  # type: ignore[misc]
        finally:
            response.close()
            response.release_conn()

    def _atomic_put(self, key: str, upload: str | bytes) -> None:
        from minio.commonconfig import CopySource

        final = self._key(key)
        tmp = f"{final}.tmp-{uuid.uuid4().hex}"
        with self._errors(key):
            if isinstance(upload, bytes):
                import io

                self.client.put_object(self.bucket, tmp, io.BytesIO(upload), len(upload))
            else:
                self.client.fput_object(self.bucket, tmp, upload)
            try:
                self.client.copy_object(self.bucket, final, CopySource(self.bucket, tmp))
            finally:
                self.client.remove_object(self.bucket, tmp)

    def write_bytes(self, key: str, data: bytes) -> None:
        self._atomic_put(key, data)

    def put_file(self, key: str, path: Path) -> None:
        self._atomic_put(key, str(path))

    def get_file(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._errors(key), tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
            tmp_path = Path(tmp.name)
        try:
            with self._errors(key):
                self.client.fget_object(self.bucket, self._key(key), str(tmp_path))
            os.replace(tmp_path, path)
        finally:
            tmp_path.unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        try:
            with self._errors(key):
                self.client.stat_object(self.bucket, self._key(key))
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        with self._errors(key):
            self.client.remove_object(self.bucket, self._key(key))
