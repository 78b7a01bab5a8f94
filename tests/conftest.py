from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.s3server import S3Server, running_s3_server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One real S3 server for the session; each test makes its own bucket."""
    with running_s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The S3 server's endpoint and credentials in the environment, as a Job pod gets them."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture
def bucket(s3_env: S3Server, request: pytest.FixtureRequest) -> str:
    name = "t-" + request.node.name.lower().replace("_", "-")[:50].strip("-[]")
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name)
    s3_env.make_bucket(name)
    return name


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
